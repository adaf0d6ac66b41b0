//! Shell-style glob matching as `fnmatch(3)` does it without flags, which is how kmod matches the patterns
//! in `modules.alias` against a device's modalias: `*` (any run, `/` included), `?` (one byte),
//! `[...]` (set, ranges, `!` or `^` negation, `]` first is literal) and `\` escaping the next byte.
//!
//! Works on bytes, never allocates, never panics; a malformed `[` is matched as a literal `[`.

/// True if `text` matches the whole `pattern`.
pub fn fnmatch(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where to resume after the most recent `*`: pattern index after it, and text index it consumed up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some(b'*') => {
                star = Some((pi + 1, ti));
                pi += 1;
                continue;
            }
            Some(b'?') => Some(1),
            Some(b'[') => match match_set(&p[pi..], t[ti]) {
                Some((true, len)) => Some(len),
                Some((false, _)) => None,
                None => (t[ti] == b'[').then_some(1),
            },
            Some(b'\\') if pi + 1 < p.len() => (p[pi + 1] == t[ti]).then_some(2),
            Some(&c) => (c == t[ti]).then_some(1),
            None => None,
        };
        match step {
            Some(len) => {
                pi += len;
                ti += 1;
            }
            None => match star {
                // Let the last `*` swallow one more byte and retry from there.
                Some((star_pi, star_ti)) => {
                    star = Some((star_pi, star_ti + 1));
                    pi = star_pi;
                    ti = star_ti + 1;
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the set starting at `set[0] == b'['`. Returns (matched, pattern bytes consumed),
/// or `None` if the set is not closed.
fn match_set(set: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(set.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = match set.get(i)? {
            b']' if !first => return Some((matched != negate, i + 1)),
            b'\\' => {
                i += 1;
                *set.get(i)?
            }
            &b => b,
        };
        first = false;
        i += 1;
        if set.get(i) == Some(&b'-') && set.get(i + 1).is_some_and(|&b| b != b']') {
            let hi = match set[i + 1] {
                b'\\' => {
                    i += 1;
                    *set.get(i + 1)?
                }
                b => b,
            };
            i += 2;
            matched |= lo <= c && c <= hi;
        } else {
            matched |= lo == c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fnmatch;

    #[test]
    fn literals_and_wildcards() {
        assert!(fnmatch("fs-ext4", "fs-ext4"));
        assert!(!fnmatch("fs-ext4", "fs-ext3"));
        assert!(!fnmatch("fs-ext4", "fs-ext44"));
        assert!(fnmatch("", ""));
        assert!(!fnmatch("", "a"));
        assert!(fnmatch("*", ""));
        assert!(fnmatch("a*", "a/b/c"));
        assert!(fnmatch("a?c", "abc"));
        assert!(!fnmatch("a?c", "ac"));
        assert!(fnmatch("*a*b*", "xxaxxbxx"));
        assert!(!fnmatch("*a*b", "xxaxxbxxc"));
        assert!(fnmatch("**x", "abx"));
    }

    #[test]
    fn real_modalias_patterns() {
        let ahci = "pci:v*d*sv*sd*bc01sc06i01*";
        assert!(fnmatch(
            ahci,
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"
        ));
        assert!(!fnmatch(
            ahci,
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i00"
        ));
        let virtio = "virtio:d00000002v*";
        assert!(fnmatch(virtio, "virtio:d00000002v00001AF4"));
        assert!(!fnmatch(virtio, "virtio:d00000012v00001AF4"));
        let usb = "usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*";
        assert!(fnmatch(
            usb,
            "usb:v0781p5581d0100dc00dsc00dp00ic08isc06ip50in00"
        ));
    }

    #[test]
    fn bracket_sets() {
        assert!(fnmatch("usb:v*p*d0[1-3]*", "usb:v1p2d02x"));
        assert!(!fnmatch("usb:v*p*d0[1-3]*", "usb:v1p2d04x"));
        assert!(fnmatch("[!a]", "b"));
        assert!(!fnmatch("[!a]", "a"));
        assert!(fnmatch("[^a]", "b"));
        assert!(fnmatch("[]]", "]"));
        assert!(fnmatch("[a-]", "-"));
        assert!(fnmatch("d[0-9A-F][0-9A-F]", "d1F"));
        assert!(!fnmatch("d[0-9A-F][0-9A-F]", "d1G"));
        // An unclosed set is a literal '['.
        assert!(fnmatch("a[b", "a[b"));
        assert!(!fnmatch("a[b", "ab"));
    }

    #[test]
    fn escapes() {
        assert!(fnmatch("a\\*", "a*"));
        assert!(!fnmatch("a\\*", "ab"));
        assert!(fnmatch("[\\]]", "]"));
        assert!(fnmatch("a\\", "a\\"));
    }

    #[test]
    fn backtracking_is_not_exponential() {
        let text = "a".repeat(200);
        let pattern = format!("{}b", "*a".repeat(50));
        let start = std::time::Instant::now();
        assert!(!fnmatch(&pattern, &text));
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }
}
