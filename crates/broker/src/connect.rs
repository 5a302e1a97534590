//! Reading a client's CONNECT options with serde.
//!
//! Only the options the broker acts on are read; every other field is
//! ignored, and a JSON `null` (async-nats sends `"jwt":null` and the like)
//! leaves the default in place, as nats-server's Go decoder does. The line
//! is already bounded by `max_control_line`; nesting is bounded here too,
//! before serde sees the text, so hostile input cannot make it dig deep.

use serde::Deserialize;

/// How deep objects and arrays may nest in a CONNECT (real clients use 1).
const MAX_DEPTH: usize = 32;

/// The CONNECT options the broker acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectOptions {
    pub(crate) verbose: bool,
    pub(crate) headers: bool,
    pub(crate) no_responders: bool,
    pub(crate) echo: bool,
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

/// The CONNECT JSON as sent; absent and `null` fields are `None`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Connect {
    verbose: Option<bool>,
    headers: Option<bool>,
    no_responders: Option<bool>,
    echo: Option<bool>,
}

/// Why a CONNECT was refused (the client gets `-ERR 'Parser Error'`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// Valid JSON, but not an object (serde would read an array as the
    /// struct's fields in order; Go's decoder refuses it).
    #[error("CONNECT is not a JSON object")]
    NotObject,
    /// Objects or arrays nested deeper than [`MAX_DEPTH`].
    #[error("CONNECT nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Not a JSON object, or a known option of the wrong type.
    #[error("invalid CONNECT: {0}")]
    Json(#[from] serde_json::Error),
}

/// Parses a CONNECT object.
pub(crate) fn parse_connect(json: &[u8]) -> Result<ConnectOptions, ConnectError> {
    if depth(json) > MAX_DEPTH {
        return Err(ConnectError::TooDeep);
    }
    if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ConnectError::NotObject);
    }
    let connect: Connect = serde_json::from_slice(json)?;
    let defaults = ConnectOptions::default();
    Ok(ConnectOptions {
        verbose: connect.verbose.unwrap_or(defaults.verbose),
        headers: connect.headers.unwrap_or(defaults.headers),
        no_responders: connect.no_responders.unwrap_or(defaults.no_responders),
        echo: connect.echo.unwrap_or(defaults.echo),
    })
}

/// The deepest nesting of `{` and `[` outside strings (malformed text
/// only has to be measured, serde refuses it afterwards).
fn depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::parser::{Op, Parser, ProtoError};

    /// The `-ERR` line a client is sent.
    #[derive(Debug, PartialEq)]
    struct ErrLine(String);

    fn err_line(text: &str) -> ErrLine {
        ErrLine(text.to_string())
    }

    /// What a client sending `line` gets back: the options, or the `-ERR`
    /// line the broker writes (the same route `Conn::handle` takes).
    fn answer(line: &[u8]) -> Result<ConnectOptions, ErrLine> {
        let mut parser = Parser::new(4096, 1024 * 1024);
        let mut buf = BytesMut::from(line);
        let wire = |e: ProtoError| ErrLine(String::from_utf8_lossy(&e.wire()).into_owned());
        match parser.next(&mut buf) {
            Ok(Some(Op::Connect(json))) => {
                parse_connect(&json).map_err(|_| wire(ProtoError::Parser))
            }
            Ok(other) => panic!("not a CONNECT: {other:?}"),
            Err(e) => Err(wire(e)),
        }
    }

    const PARSER_ERROR: &str = "-ERR 'Parser Error'\r\n";

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
    fn nested_values_spaces_and_unknown_fields() {
        let json = br#" { "verbose" : true , "x": {"a": [1, -2.5e3, "q\"}]"], "b": {}}, "echo": false, "y": [] } "#;
        let opts = parse_connect(json).unwrap();
        assert!(opts.verbose);
        assert!(!opts.echo);
        assert_eq!(parse_connect(b"{}").unwrap(), ConnectOptions::default());
    }

    #[test]
    fn nulls_and_missing_fields_keep_the_defaults() {
        let nulls = br#"{"verbose":null,"headers":null,"no_responders":null,"echo":null}"#;
        assert_eq!(parse_connect(nulls).unwrap(), ConnectOptions::default());
        assert_eq!(
            answer(b"CONNECT {\"name\":\"only a name\"}\r\n"),
            Ok(ConnectOptions::default())
        );
        assert_eq!(
            answer(b"CONNECT {\"echo\":false}\r\n").map(|o| (o.echo, o.verbose)),
            Ok((false, false))
        );
    }

    #[test]
    fn not_json_is_a_parser_error() {
        for bad in [
            &b"CONNECT {not json}\r\n"[..],
            b"CONNECT {\r\n",
            b"CONNECT {\"a\"}\r\n",
            b"CONNECT {\"a\":}\r\n",
            b"CONNECT [1]\r\n",
            b"CONNECT [true]\r\n",
            b"CONNECT [true,true,true,false]\r\n",
            b"CONNECT []\r\n",
            b"CONNECT  \r\n",
            b"CONNECT \"verbose\"\r\n",
            b"CONNECT null\r\n",
            b"CONNECT {\"a\":1,}\r\n",
            b"CONNECT {} x\r\n",
            b"CONNECT {\"a\":tru}\r\n",
        ] {
            assert_eq!(
                answer(bad),
                Err(err_line(PARSER_ERROR)),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn odd_text_in_ignored_fields_is_ignored() {
        // Go's decoder (nats-server) replaces bad UTF-8 and only checks the
        // syntax of values it skips, rather than failing.
        for odd in [
            &b"CONNECT {\"a\":\"\xff\xfe\"}\r\n"[..],
            b"CONNECT {\"name\":\"\\u00e9\\n\\\"\"}\r\n",
            b"CONNECT {\"a\":1e99999}\r\n",
        ] {
            assert_eq!(
                answer(odd),
                Ok(ConnectOptions::default()),
                "{}",
                String::from_utf8_lossy(odd)
            );
        }
    }

    #[test]
    fn wrong_types_are_parser_errors() {
        for bad in [
            r#"{"verbose":"yes"}"#,
            r#"{"echo":0}"#,
            r#"{"headers":[true]}"#,
            r#"{"no_responders":{"a":true}}"#,
            r#"{"verbose":1.5}"#,
        ] {
            let line = format!("CONNECT {bad}\r\n");
            assert_eq!(
                answer(line.as_bytes()),
                Err(err_line(PARSER_ERROR)),
                "{bad}"
            );
        }
    }

    #[test]
    fn huge_strings_hit_the_control_line_limit() {
        let name = "x".repeat(10_000);
        let line = format!("CONNECT {{\"name\":\"{name}\"}}\r\n");
        assert_eq!(
            answer(line.as_bytes()),
            Err(err_line("-ERR 'Maximum Control Line Exceeded'\r\n"))
        );
        // Below the limit a long unknown string is ignored; a long one where a
        // boolean belongs is refused.
        let name = "y".repeat(3_000);
        let line = format!("CONNECT {{\"name\":\"{name}\",\"verbose\":true}}\r\n");
        assert!(answer(line.as_bytes()).unwrap().verbose);
        let line = format!("CONNECT {{\"verbose\":\"{name}\"}}\r\n");
        assert_eq!(answer(line.as_bytes()), Err(err_line(PARSER_ERROR)));
        // parse_connect itself copes with any length (the limit is the parser's).
        let json = format!("{{\"name\":\"{}\"}}", "z".repeat(1 << 20));
        assert!(parse_connect(json.as_bytes()).is_ok());
    }

    #[test]
    fn deep_nesting_is_refused_before_serde() {
        let ok = format!("{{\"x\":{}1{}}}", "[".repeat(30), "]".repeat(30));
        assert!(parse_connect(ok.as_bytes()).is_ok());
        for open in ["[", "{\"a\":"] {
            let deep = format!("{{\"x\":{}", open.repeat(40));
            assert!(matches!(
                parse_connect(deep.as_bytes()),
                Err(ConnectError::TooDeep)
            ));
            let line = format!("CONNECT {deep}\r\n");
            assert_eq!(answer(line.as_bytes()), Err(err_line(PARSER_ERROR)));
        }
        // Far deeper than the stack could take, and far longer than a line.
        let abyss = "[".repeat(1 << 20);
        assert!(matches!(
            parse_connect(abyss.as_bytes()),
            Err(ConnectError::TooDeep)
        ));
        // Brackets inside strings do not count.
        let quoted = format!("{{\"x\":\"{}\"}}", "[{".repeat(100));
        assert!(parse_connect(quoted.as_bytes()).is_ok());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A fixed LCG, so a failure is reproducible.
        let mut state = 7u64;
        let mut below = |n: usize| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as usize) % n
        };
        let alphabet = b"{}[]\":,\\ tfnul0123456789.eE-+abc\xff";
        for _ in 0..20_000 {
            let len = below(64);
            let bytes: Vec<u8> = (0..len).map(|_| alphabet[below(alphabet.len())]).collect();
            let _ = parse_connect(&bytes);
        }
    }
}
