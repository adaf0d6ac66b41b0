//! Sleuth Kit's body file, version 3 (what `fls -m` writes and `mactime` reads):
//! `MD5|name|inode|mode_as_string|UID|GID|size|atime|mtime|ctime|crtime`, UNIX seconds, `0` where a time
//! is unknown (never empty). The mode string is fls's: the directory-entry type, `/`, and the `ls -l`
//! string with TSK's type letters (`r/rrwxr-xr-x`, `d/drwxr-xr-x`, `l/lrwxrwxrwx`). A symlink's name
//! carries ` -> target` as fls writes it.
//!
//! Names are escaped the way `mactime` decodes them (its `tm_split` turns `%XX` back into the byte):
//! `%`, `|`, `\`, control characters, DEL and bytes that are not UTF-8 become `%XX`, so no name can add a
//! column or a line and the exact bytes can be recovered.

use std::io::Write;

/// What the filesystem walker reports for one entry (the fields a body file needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkEntry {
    /// Path as on the examined system, raw bytes (`/etc/passwd`).
    pub path: Vec<u8>,
    /// `st_mode` with its type bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub inode: u64,
    /// (seconds, nanoseconds); `None` where the filesystem does not keep the time.
    pub atime: Option<(i64, u32)>,
    pub mtime: Option<(i64, u32)>,
    pub ctime: Option<(i64, u32)>,
    /// Birth time from `statx`, where the filesystem has it.
    pub crtime: Option<(i64, u32)>,
    /// A symlink's target (raw bytes).
    pub link_target: Option<Vec<u8>>,
}

/// TSK's type letter for the inode half of the mode string.
fn meta_type(mode: u32) -> char {
    match mode & libc::S_IFMT {
        libc::S_IFREG => 'r',
        libc::S_IFDIR => 'd',
        libc::S_IFIFO => 'p',
        libc::S_IFCHR => 'c',
        libc::S_IFBLK => 'b',
        libc::S_IFLNK => 'l',
        libc::S_IFSOCK => 'h',
        _ => '-',
    }
}

/// TSK's type letter for the directory-entry half (sockets are `s` here).
fn name_type(mode: u32) -> char {
    match mode & libc::S_IFMT {
        libc::S_IFSOCK => 's',
        _ => meta_type(mode),
    }
}

/// `r/rrwxr-xr-x` as fls -m writes it.
pub fn mode_string(mode: u32) -> String {
    let mut s = String::with_capacity(12);
    s.push(name_type(mode));
    s.push('/');
    s.push(meta_type(mode));
    let bit = |b: u32, c: char| if mode & b != 0 { c } else { '-' };
    let special = |x: u32, sp: u32, on: char, off: char| match (mode & sp != 0, mode & x != 0) {
        (true, true) => on,
        (true, false) => off,
        (false, true) => 'x',
        (false, false) => '-',
    };
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(special(0o100, 0o4000, 's', 'S'));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(special(0o010, 0o2000, 's', 'S'));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(special(0o001, 0o1000, 't', 'T'));
    s
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_escaped_byte(out: &mut String, b: u8) {
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 15)]));
}

/// Whether a byte goes into a name as it is (printable ASCII other than `%`, `|`, `\`).
fn plain(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'%' && b != b'|' && b != b'\\'
}

/// Escapes a name for a body-file column (see the module doc).
pub fn escape_name(out: &mut String, raw: &[u8]) {
    // Most names are plain ASCII: copied in one go.
    if raw.iter().all(|&b| plain(b)) {
        out.push_str(std::str::from_utf8(raw).unwrap_or(""));
        return;
    }
    let mut rest = raw;
    while !rest.is_empty() {
        let (good, bad) = match std::str::from_utf8(rest) {
            Ok(s) => (s, &[][..]),
            Err(e) => {
                let (g, b) = rest.split_at(e.valid_up_to());
                // `valid_up_to` guarantees `g` is UTF-8.
                (std::str::from_utf8(g).unwrap_or(""), b)
            }
        };
        for c in good.chars() {
            match c {
                '%' | '|' | '\\' | '\u{7f}' => push_escaped_byte(out, c as u8),
                c if (c as u32) < 0x20 => push_escaped_byte(out, c as u8),
                c => out.push(c),
            }
        }
        if bad.is_empty() {
            break;
        }
        // One byte that is not UTF-8.
        push_escaped_byte(out, bad[0]);
        rest = &bad[1..];
    }
}

/// One body-file line (with `\n`).
pub fn line(e: &WalkEntry) -> String {
    let mut s = String::with_capacity(e.path.len() + 96);
    push_line(&mut s, e);
    s
}

/// Appends one body-file line (with `\n`) to `out`.
pub fn push_line(out: &mut String, e: &WalkEntry) {
    use std::fmt::Write as _;
    out.push_str("0|");
    escape_name(out, &e.path);
    if let Some(t) = &e.link_target {
        out.push_str(" -> ");
        escape_name(out, t);
    }
    let secs = |t: Option<(i64, u32)>| t.map(|(s, _)| s.max(0)).unwrap_or(0);
    // Writing into a String cannot fail.
    let _ = writeln!(
        out,
        "|{}|{}|{}|{}|{}|{}|{}|{}|{}",
        e.inode,
        mode_string(e.mode),
        e.uid,
        e.gid,
        e.size,
        secs(e.atime),
        secs(e.mtime),
        secs(e.ctime),
        secs(e.crtime),
    );
}

/// Writes body-file lines.
pub struct BodyWriter<W: Write> {
    out: W,
    /// One line, reused (no allocation per entry).
    buf: String,
    pub lines: u64,
}

impl<W: Write> BodyWriter<W> {
    pub fn new(out: W) -> Self {
        BodyWriter {
            out,
            buf: String::with_capacity(512),
            lines: 0,
        }
    }

    pub fn write(&mut self, e: &WalkEntry) -> std::io::Result<()> {
        self.lines += 1;
        self.buf.clear();
        push_line(&mut self.buf, e);
        self.out.write_all(self.buf.as_bytes())
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &[u8], mode: u32) -> WalkEntry {
        WalkEntry {
            path: path.to_vec(),
            mode,
            uid: 0,
            gid: 4,
            size: 12,
            inode: 131,
            atime: Some((1_700_000_001, 5)),
            mtime: Some((1_700_000_002, 0)),
            ctime: Some((1_700_000_003, 0)),
            crtime: None,
            link_target: None,
        }
    }

    #[test]
    fn mode_strings_match_fls() {
        assert_eq!(mode_string(libc::S_IFREG | 0o755), "r/rrwxr-xr-x");
        assert_eq!(mode_string(libc::S_IFDIR | 0o1777), "d/drwxrwxrwt");
        assert_eq!(mode_string(libc::S_IFREG | 0o4755), "r/rrwsr-xr-x");
        assert_eq!(mode_string(libc::S_IFREG | 0o2644), "r/rrw-r-Sr--");
        assert_eq!(mode_string(libc::S_IFLNK | 0o777), "l/lrwxrwxrwx");
        assert_eq!(mode_string(libc::S_IFSOCK | 0o755), "s/hrwxr-xr-x");
        assert_eq!(mode_string(libc::S_IFCHR | 0o620), "c/crw--w----");
    }

    #[test]
    fn lines_have_eleven_columns_whatever_the_name() {
        let e = entry(b"/tmp/a|b\\c\nd%e\xff", libc::S_IFREG | 0o644);
        let l = line(&e);
        assert_eq!(
            l,
            "0|/tmp/a%7Cb%5Cc%0Ad%25e%FF|131|r/rrw-r--r--|0|4|12|1700000001|1700000002|1700000003|0\n"
        );
        assert_eq!(l.trim_end().split('|').count(), 11);
        assert_eq!(l.matches('\n').count(), 1);
        let mut s = entry(b"/bin/sh", libc::S_IFLNK | 0o777);
        s.link_target = Some(b"dash".to_vec());
        s.atime = None;
        assert!(line(&s).starts_with("0|/bin/sh -> dash|131|l/lrwxrwxrwx|0|4|12|0|"));
    }
}
