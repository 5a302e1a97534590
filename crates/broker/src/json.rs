//! The two bits of JSON the protocol needs: writing INFO and reading the
//! boolean options of CONNECT. Small enough not to need a JSON crate.

/// The CONNECT options the broker acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectOptions {
    pub verbose: bool,
    pub headers: bool,
    pub no_responders: bool,
    pub echo: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            verbose: false,
            headers: false,
            no_responders: false,
            echo: true,
        }
    }
}

/// Parses a CONNECT object. Unknown fields and `null`s leave defaults in place.
pub(crate) fn parse_connect(json: &[u8]) -> Option<ConnectOptions> {
    let mut opts = ConnectOptions::default();
    let mut s = Scanner { b: json, i: 0 };
    s.ws();
    s.eat(b'{')?;
    s.ws();
    if s.peek() == Some(b'}') {
        s.i += 1;
    } else {
        loop {
            s.ws();
            let key = s.string()?;
            s.ws();
            s.eat(b':')?;
            s.ws();
            let value = match s.peek()? {
                b't' => s.literal(b"true").map(|_| Some(true))?,
                b'f' => s.literal(b"false").map(|_| Some(false))?,
                _ => {
                    s.skip_value(0)?;
                    None
                }
            };
            if let Some(v) = value {
                match key.as_slice() {
                    b"verbose" => opts.verbose = v,
                    b"headers" => opts.headers = v,
                    b"no_responders" => opts.no_responders = v,
                    b"echo" => opts.echo = v,
                    _ => {}
                }
            }
            s.ws();
            match s.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.ws();
    (s.i == json.len()).then_some(opts)
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// A string's raw bytes (escapes kept as written; keys we care about have none).
    fn string(&mut self) -> Option<Vec<u8>> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            match self.next()? {
                b'"' => return Some(self.b[start..self.i - 1].to_vec()),
                b'\\' => {
                    self.next()?;
                }
                _ => {}
            }
        }
    }

    fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth > 32 {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'n' => self.literal(b"null"),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'{' | b'[' => {
                let close = if self.next()? == b'{' { b'}' } else { b']' };
                self.ws();
                if self.peek()? == close {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    if close == b'}' {
                        self.string()?;
                        self.ws();
                        self.eat(b':')?;
                        self.ws();
                    }
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => continue,
                        c if c == close => return Some(()),
                        _ => return None,
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                while matches!(
                    self.peek(),
                    Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                ) {
                    self.i += 1;
                }
                (self.i > start).then_some(())
            }
            _ => None,
        }
    }
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn async_nats_connect() {
        let json = br#"{"verbose":false,"pedantic":false,"jwt":null,"nkey":null,"signature":null,"name":null,"echo":true,"lang":"rust","version":"0.51.0","protocol":1,"tls_required":false,"user":null,"pass":null,"auth_token":null,"headers":true,"no_responders":true}"#;
        let opts = parse_connect(json).unwrap();
        assert_eq!(
            opts,
            ConnectOptions {
                verbose: false,
                headers: true,
                no_responders: true,
                echo: true
            }
        );
    }

    #[test]
    fn nested_values_and_spaces() {
        let json = br#" { "verbose" : true , "x": {"a": [1, -2.5e3, "q\"}"], "b": {}}, "echo": false, "y": [] } "#;
        let opts = parse_connect(json).unwrap();
        assert!(opts.verbose);
        assert!(!opts.echo);
        assert_eq!(parse_connect(b"{}"), Some(ConnectOptions::default()));
    }

    #[test]
    fn malformed() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"a\"}",
            b"{\"a\":}",
            b"[1]",
            b"{\"a\":1,}",
            b"{} x",
            b"{\"a\":tru}",
        ] {
            assert_eq!(parse_connect(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn escapes_strings() {
        let mut s = String::new();
        push_str(&mut s, "a\"b\\c\n");
        assert_eq!(s, r#""a\"b\\c\u000a""#);
    }
}
