//! Sorting events by time in bounded memory: events are kept as their JSON lines; when the buffer
//! passes its byte budget it is sorted and spilled to a run file in a scratch directory, and the runs
//! are merged at the end (a k-way merge with one line per run in memory). A window (`--from`/`--to`)
//! drops events outside it on the way in.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::event::Event;

/// Errors spilling or merging sorted runs.
#[derive(Debug, thiserror::Error)]
pub enum SortError {
    #[error("writing the sort run {path}")]
    WriteRun {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the sort run {path}")]
    ReadRun {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the sort run {path} holds a line that is not `timestamp<TAB>event`")]
    BadRun { path: PathBuf },
}

/// Events in, sorted events out.
pub struct Sorter {
    scratch: PathBuf,
    budget: usize,
    held: Vec<(i64, String)>,
    held_bytes: usize,
    runs: Vec<PathBuf>,
    from: Option<i64>,
    to: Option<i64>,
    /// Events dropped by the window.
    pub outside: u64,
    /// Events kept.
    pub kept: u64,
}

impl Sorter {
    /// A sorter spilling into `scratch` (created; removed by [`Sorter::finish`]) once it holds more
    /// than `budget` bytes of lines. `from`/`to` are inclusive microsecond bounds.
    pub fn new(scratch: &Path, budget: usize, from: Option<i64>, to: Option<i64>) -> Self {
        Sorter {
            scratch: scratch.to_owned(),
            budget,
            held: Vec::new(),
            held_bytes: 0,
            runs: Vec::new(),
            from,
            to,
            outside: 0,
            kept: 0,
        }
    }

    /// Takes one event (or counts it as outside the window).
    pub fn push(&mut self, event: &Event) -> Result<(), SortError> {
        if self.from.is_some_and(|f| event.timestamp < f)
            || self.to.is_some_and(|t| event.timestamp > t)
        {
            self.outside += 1;
            return Ok(());
        }
        let line = event.to_line();
        self.held_bytes += line.len() + 32;
        self.held.push((event.timestamp, line));
        self.kept += 1;
        if self.held_bytes > self.budget {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<(), SortError> {
        self.held.sort_unstable();
        let path = self.scratch.join(format!("run-{:05}", self.runs.len()));
        let err = |source| SortError::WriteRun {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&self.scratch).map_err(err)?;
        let mut w = BufWriter::new(File::create(&path).map_err(err)?);
        for (t, line) in self.held.drain(..) {
            writeln!(w, "{t}\t{line}").map_err(err)?;
        }
        w.flush().map_err(err)?;
        self.held_bytes = 0;
        self.runs.push(path);
        Ok(())
    }

    /// Calls `each` with every kept event's JSON line in time order (ties by the line's bytes, so the
    /// order is the same on every run), then removes the scratch directory.
    pub fn finish(
        mut self,
        mut each: impl FnMut(i64, &str) -> std::io::Result<()>,
    ) -> Result<(), FinishError> {
        if self.runs.is_empty() {
            self.held.sort_unstable();
            for (t, line) in &self.held {
                each(*t, line).map_err(FinishError::Output)?;
            }
            return Ok(());
        }
        if !self.held.is_empty() {
            self.spill()?;
        }
        let result = self.merge(&mut each);
        let _ = fs::remove_dir_all(&self.scratch);
        result
    }

    fn merge(
        &self,
        each: &mut impl FnMut(i64, &str) -> std::io::Result<()>,
    ) -> Result<(), FinishError> {
        let mut readers = Vec::new();
        for p in &self.runs {
            let f = File::open(p).map_err(|source| SortError::ReadRun {
                path: p.clone(),
                source,
            })?;
            readers.push((p, BufReader::new(f).lines()));
        }
        let next = |i: usize, readers: &mut Vec<(&PathBuf, std::io::Lines<BufReader<File>>)>| {
            let (path, lines) = &mut readers[i];
            match lines.next() {
                None => Ok(None),
                Some(Err(source)) => Err(SortError::ReadRun {
                    path: (*path).clone(),
                    source,
                }),
                Some(Ok(l)) => {
                    let (t, rest) = l.split_once('\t').ok_or_else(|| SortError::BadRun {
                        path: (*path).clone(),
                    })?;
                    let t: i64 = t.parse().map_err(|_| SortError::BadRun {
                        path: (*path).clone(),
                    })?;
                    Ok(Some((t, rest.to_owned())))
                }
            }
        };
        let mut heap = BinaryHeap::new();
        for i in 0..readers.len() {
            if let Some((t, l)) = next(i, &mut readers)? {
                heap.push(Reverse((t, l, i)));
            }
        }
        while let Some(Reverse((t, l, i))) = heap.pop() {
            each(t, &l).map_err(FinishError::Output)?;
            if let Some((t, l)) = next(i, &mut readers)? {
                heap.push(Reverse((t, l, i)));
            }
        }
        Ok(())
    }
}

/// Errors at the end of a sort: the runs, or the consumer of the sorted lines.
#[derive(Debug, thiserror::Error)]
pub enum FinishError {
    #[error(transparent)]
    Sort(#[from] SortError),
    #[error("writing the sorted timeline")]
    Output(#[source] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: i64, m: &str) -> Event {
        Event::new(t, "Entry Written", "test", "/x", "h", m.to_owned())
    }

    #[test]
    fn spilled_runs_merge_in_time_order_and_the_window_cuts() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("sort");
        // A tiny budget: every few events spill, so the merge is exercised.
        let mut s = Sorter::new(&scratch, 600, Some(10), Some(990));
        let mut expect = Vec::new();
        for i in 0..1000i64 {
            let t = (i * 7919) % 1000; // a permutation of 0..1000
            s.push(&ev(t, &format!("e{t}"))).unwrap();
            if (10..=990).contains(&t) {
                expect.push(t);
            }
        }
        expect.sort();
        assert!(s.runs.len() > 10, "the budget forces spills");
        assert_eq!(s.outside, 19);
        let mut got = Vec::new();
        s.finish(|t, line| {
            let e: Event = serde_json::from_str(line).unwrap();
            assert_eq!(e.timestamp, t);
            assert_eq!(e.message, format!("e{t}"));
            got.push(t);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, expect);
        assert!(!scratch.exists(), "the scratch directory is removed");
    }

    #[test]
    fn in_memory_sort_breaks_ties_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Sorter::new(&dir.path().join("s"), 1 << 20, None, None);
        for m in ["b", "a", "c"] {
            s.push(&ev(5, m)).unwrap();
        }
        s.push(&ev(1, "z")).unwrap();
        let mut got = Vec::new();
        s.finish(|_, l| {
            got.push(serde_json::from_str::<Event>(l).unwrap().message);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, ["z", "a", "b", "c"]);
    }
}
