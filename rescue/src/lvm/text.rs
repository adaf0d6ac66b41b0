//! lvm2's config-text format, the language VG metadata is written in: `name = value` pairs and
//! `name { … }` sections; values are integers, floats, double-quoted strings (with `\"` and `\\`
//! escapes) or `[ … ]` arrays of them; `#` starts a comment. A small recursive-descent parser into a
//! tree; it never panics on bad input.

/// A value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Str(String),
    Array(Vec<Value>),
    Section(Section),
}

/// A section: its entries in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Section {
    pub entries: Vec<(String, Value)>,
}

impl Section {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    pub fn section(&self, key: &str) -> Option<&Section> {
        match self.get(key) {
            Some(Value::Section(s)) => Some(s),
            _ => None,
        }
    }
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.get(key) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }
    pub fn array(&self, key: &str) -> Option<&[Value]> {
        match self.get(key) {
            Some(Value::Array(a)) => Some(a),
            _ => None,
        }
    }
    /// The strings of a string array (`status = ["READ", "WRITE"]`).
    pub fn flags(&self, key: &str) -> Vec<&str> {
        self.array(key)
            .unwrap_or_default()
            .iter()
            .filter_map(|v| match v {
                Value::Str(s) => Some(s.as_str()),
                _ => None,
            })
            .collect()
    }
    /// Child sections in file order.
    pub fn sections(&self) -> impl Iterator<Item = (&str, &Section)> {
        self.entries.iter().filter_map(|(k, v)| match v {
            Value::Section(s) => Some((k.as_str(), s)),
            _ => None,
        })
    }
}

/// Where and why the text did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("metadata text line {line}: {what}")]
pub struct TextError {
    pub line: usize,
    pub what: String,
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn err(&self, what: impl Into<String>) -> TextError {
        let line = 1 + self.s[..self.pos.min(self.s.len())]
            .iter()
            .filter(|&&c| c == b'\n')
            .count();
        TextError {
            line,
            what: what.into(),
        }
    }

    fn skip(&mut self) {
        while let Some(&c) = self.s.get(self.pos) {
            if c == b'#' {
                while self.s.get(self.pos).is_some_and(|&c| c != b'\n') {
                    self.pos += 1;
                }
            } else if c.is_ascii_whitespace() {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn ident(&mut self) -> Result<String, TextError> {
        self.skip();
        let start = self.pos;
        while self.s.get(self.pos).is_some_and(|&c| {
            c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'+' | b'/')
        }) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.err("expected a name"));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    fn section_body(&mut self, top: bool) -> Result<Section, TextError> {
        let mut sec = Section::default();
        loop {
            self.skip();
            match self.s.get(self.pos) {
                None if top => return Ok(sec),
                None => return Err(self.err("section not closed with '}'")),
                Some(b'}') if !top => {
                    self.pos += 1;
                    return Ok(sec);
                }
                Some(_) => {
                    let name = self.ident()?;
                    self.skip();
                    match self.s.get(self.pos) {
                        Some(b'{') => {
                            self.pos += 1;
                            self.depth += 1;
                            if self.depth > 32 {
                                return Err(self.err("sections nested too deeply"));
                            }
                            let child = self.section_body(false)?;
                            self.depth -= 1;
                            sec.entries.push((name, Value::Section(child)));
                        }
                        Some(b'=') => {
                            self.pos += 1;
                            let v = self.value(true)?;
                            sec.entries.push((name, v));
                        }
                        _ => return Err(self.err(format!("expected '=' or '{{' after {name}"))),
                    }
                }
            }
        }
    }

    fn value(&mut self, array_ok: bool) -> Result<Value, TextError> {
        self.skip();
        match self.s.get(self.pos) {
            Some(b'"') => {
                self.pos += 1;
                let mut out = Vec::new();
                loop {
                    match self.s.get(self.pos) {
                        None => return Err(self.err("string not closed")),
                        Some(b'"') => {
                            self.pos += 1;
                            break;
                        }
                        Some(b'\\') => {
                            if let Some(&c) = self.s.get(self.pos + 1) {
                                out.push(c);
                            }
                            self.pos += 2;
                        }
                        Some(&c) => {
                            out.push(c);
                            self.pos += 1;
                        }
                    }
                }
                Ok(Value::Str(String::from_utf8_lossy(&out).into_owned()))
            }
            Some(b'[') if array_ok => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip();
                    match self.s.get(self.pos) {
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Value::Array(items));
                        }
                        Some(b',') => self.pos += 1,
                        None => return Err(self.err("array not closed with ']'")),
                        Some(_) => items.push(self.value(false)?),
                    }
                }
            }
            Some(c) if c.is_ascii_digit() || *c == b'-' || *c == b'+' => {
                let start = self.pos;
                self.pos += 1;
                while self
                    .s
                    .get(self.pos)
                    .is_some_and(|c| c.is_ascii_digit() || *c == b'.')
                {
                    self.pos += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
                if t.contains('.') {
                    t.parse()
                        .map(Value::Float)
                        .map_err(|_| self.err(format!("bad number {t}")))
                } else {
                    t.parse()
                        .map(Value::Int)
                        .map_err(|_| self.err(format!("bad number {t}")))
                }
            }
            _ => Err(self.err("expected a value")),
        }
    }
}

/// Parses a whole metadata text into its top-level section.
pub fn parse(text: &str) -> Result<Section, TextError> {
    Parser {
        s: text.as_bytes(),
        pos: 0,
        depth: 0,
    }
    .section_body(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections_arrays_strings_and_comments() {
        let t = parse(
            "# comment\nvg-1 {\nid = \"a\\\"b\"\nseqno = 7\nstatus = [\"READ\", \"WRITE\"]\n\
             stripes = [\n\"pv0\", 0,\n\"pv1\", 12\n]\nsub { x = -3 f = 1.5 }\n}\n\
             contents = \"Text Format Volume Group\"\n",
        )
        .unwrap();
        let vg = t.section("vg-1").unwrap();
        assert_eq!(vg.str("id"), Some("a\"b"));
        assert_eq!(vg.int("seqno"), Some(7));
        assert_eq!(vg.flags("status"), ["READ", "WRITE"]);
        assert_eq!(
            vg.array("stripes").unwrap(),
            [
                Value::Str("pv0".into()),
                Value::Int(0),
                Value::Str("pv1".into()),
                Value::Int(12)
            ]
        );
        assert_eq!(vg.section("sub").unwrap().int("x"), Some(-3));
        assert_eq!(
            vg.section("sub").unwrap().get("f"),
            Some(&Value::Float(1.5))
        );
        assert_eq!(t.str("contents"), Some("Text Format Volume Group"));
    }

    #[test]
    fn bad_text_is_an_error_with_a_line_not_a_panic() {
        for bad in [
            "a {",
            "a = ",
            "a = \"open",
            "a = [1, 2",
            "= 3",
            "a b",
            "a = [[1]]",
            "}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse("x = 1\n\ny = ?").unwrap_err().line, 3);
        let deep = "a {".repeat(100) + &"}".repeat(100);
        assert!(parse(&deep).is_err());
    }
}
