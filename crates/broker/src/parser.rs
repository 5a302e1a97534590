//! Incremental parser for the client side of the NATS protocol.
//!
//! The parser owns no socket: the connection reads into a `BytesMut` and asks
//! for the next complete operation. A command may be split at any byte and many
//! commands may arrive in one read, so the state is either "awaiting a control
//! line" or "awaiting the payload of a PUB/HPUB whose control line we have".

use bytes::{Buf, Bytes, BytesMut};

/// A protocol violation. `fatal()` ones close the connection, as nats-server does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProtoError {
    #[error("Unknown Protocol Operation")]
    UnknownOperation,
    #[error("Parser Error")]
    Parser,
    #[error("Maximum Payload Violation")]
    MaxPayload,
    #[error("Maximum Control Line Exceeded")]
    MaxControlLine,
    #[error("Invalid Publish Subject")]
    InvalidPublishSubject,
    #[error("Invalid Subject")]
    InvalidSubject,
    #[error("Slow Consumer")]
    SlowConsumer,
    #[error("Stale Connection")]
    StaleConnection,
    #[error("Secure Connection - TLS Required")]
    TlsRequired,
    #[error("Authorization Violation")]
    AuthorizationViolation,
    #[error("Authentication Timeout")]
    AuthenticationTimeout,
    #[error("maximum connections exceeded")]
    MaxConnections,
    /// The subject as the client sent it.
    #[error("Permissions Violation for Publish to {}", quote(.0))]
    PublishViolation(Bytes),
    #[error("Permissions Violation for Subscription to {}{}", quote(.subject), using_queue(.queue))]
    SubscribeViolation {
        subject: Bytes,
        queue: Option<Bytes>,
    },
}

/// A subject in double quotes, escaped like Go's `%q` (which nats-server uses
/// in these errors) for the characters a valid subject can hold.
fn quote(subject: &[u8]) -> String {
    let mut out = String::with_capacity(subject.len() + 2);
    out.push('"');
    for c in String::from_utf8_lossy(subject).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn using_queue(queue: &Option<Bytes>) -> String {
    match queue {
        Some(q) => format!(" using queue {}", quote(q)),
        None => String::new(),
    }
}

impl ProtoError {
    pub(crate) fn fatal(&self) -> bool {
        !matches!(
            self,
            Self::InvalidPublishSubject
                | Self::InvalidSubject
                | Self::PublishViolation(_)
                | Self::SubscribeViolation { .. }
        )
    }

    /// The `-ERR '...'\r\n` line sent to the client.
    pub(crate) fn wire(&self) -> Vec<u8> {
        format!("-ERR '{self}'\r\n").into_bytes()
    }
}

/// One complete client operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    Connect(Bytes),
    Pub {
        subject: Bytes,
        reply: Option<Bytes>,
        /// Length of the header block for HPUB; `None` for PUB.
        header_len: Option<usize>,
        /// Headers (if any) followed by the payload.
        message: Bytes,
    },
    Sub {
        subject: Bytes,
        queue: Option<Bytes>,
        sid: Bytes,
    },
    Unsub {
        sid: Bytes,
        max: Option<u64>,
    },
    Ping,
    Pong,
}

#[derive(Debug)]
struct PendingPub {
    subject: Bytes,
    reply: Option<Bytes>,
    header_len: Option<usize>,
    total: usize,
}

#[derive(Debug)]
pub(crate) struct Parser {
    pending: Option<PendingPub>,
    max_control_line: usize,
    max_payload: usize,
}

impl Parser {
    pub(crate) fn new(max_control_line: usize, max_payload: usize) -> Self {
        Parser {
            pending: None,
            max_control_line,
            max_payload,
        }
    }

    /// Bytes still needed to finish the current payload, so the reader can
    /// reserve them in one go.
    pub(crate) fn payload_wanted(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.total + 2)
    }

    /// Takes the next complete operation off the front of `buf`, or `Ok(None)`
    /// when more bytes are needed. After an error the connection must close.
    pub(crate) fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Op>, ProtoError> {
        loop {
            if let Some(p) = &self.pending {
                let n = p.total;
                if buf.len() <= n {
                    return Ok(None);
                }
                let terminator = match buf[n] {
                    b'\n' => 1,
                    b'\r' if buf.len() == n + 1 => return Ok(None),
                    b'\r' if buf[n + 1] == b'\n' => 2,
                    _ => return Err(ProtoError::Parser),
                };
                let p = self.pending.take().expect("checked above");
                let message = buf.split_to(n).freeze();
                buf.advance(terminator);
                return Ok(Some(Op::Pub {
                    subject: p.subject,
                    reply: p.reply,
                    header_len: p.header_len,
                    message,
                }));
            }

            let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
                if buf.len() > self.max_control_line {
                    return Err(ProtoError::MaxControlLine);
                }
                return Ok(None);
            };
            let mut line = buf.split_to(nl + 1).freeze();
            line.truncate(nl);
            if line.last() == Some(&b'\r') {
                line.truncate(nl - 1);
            }
            if line.len() > self.max_control_line {
                return Err(ProtoError::MaxControlLine);
            }
            if let Some(op) = self.control_line(line)? {
                return Ok(Some(op));
            }
        }
    }

    /// Parses one control line. Returns `None` for blank lines and for PUB/HPUB,
    /// whose payload is still to come.
    fn control_line(&mut self, line: Bytes) -> Result<Option<Op>, ProtoError> {
        let args = split_args(&line);
        let Some(&(vs, ve)) = args.first() else {
            return Ok(None);
        };
        let verb = &line[vs..ve];
        let arg = |i: usize| -> Bytes {
            let (s, e) = args[i];
            line.slice(s..e)
        };
        let is = |name: &str| verb.eq_ignore_ascii_case(name.as_bytes());

        if is("PUB") {
            let (reply, size) = match args.len() {
                3 => (None, 2),
                4 => (Some(arg(2)), 3),
                _ => return Err(ProtoError::Parser),
            };
            let total = parse_size(&arg(size))?;
            self.start_payload(arg(1), reply, None, total)?;
            Ok(None)
        } else if is("HPUB") {
            let (reply, hdr) = match args.len() {
                4 => (None, 2),
                5 => (Some(arg(2)), 3),
                _ => return Err(ProtoError::Parser),
            };
            let header_len = parse_size(&arg(hdr))?;
            let total = parse_size(&arg(hdr + 1))?;
            if header_len > total {
                return Err(ProtoError::Parser);
            }
            self.start_payload(arg(1), reply, Some(header_len), total)?;
            Ok(None)
        } else if is("SUB") {
            match args.len() {
                3 => Ok(Some(Op::Sub {
                    subject: arg(1),
                    queue: None,
                    sid: arg(2),
                })),
                4 => Ok(Some(Op::Sub {
                    subject: arg(1),
                    queue: Some(arg(2)),
                    sid: arg(3),
                })),
                _ => Err(ProtoError::Parser),
            }
        } else if is("UNSUB") {
            match args.len() {
                2 => Ok(Some(Op::Unsub {
                    sid: arg(1),
                    max: None,
                })),
                3 => Ok(Some(Op::Unsub {
                    sid: arg(1),
                    max: Some(parse_size(&arg(2))? as u64),
                })),
                _ => Err(ProtoError::Parser),
            }
        } else if is("PING") {
            Ok(Some(Op::Ping))
        } else if is("PONG") {
            Ok(Some(Op::Pong))
        } else if is("CONNECT") {
            // The JSON may contain spaces: take everything after the verb.
            let json = line.slice(ve..);
            let start = json
                .iter()
                .position(|b| !is_space(*b))
                .unwrap_or(json.len());
            Ok(Some(Op::Connect(json.slice(start..))))
        } else {
            Err(ProtoError::UnknownOperation)
        }
    }

    fn start_payload(
        &mut self,
        subject: Bytes,
        reply: Option<Bytes>,
        header_len: Option<usize>,
        total: usize,
    ) -> Result<(), ProtoError> {
        if total > self.max_payload {
            return Err(ProtoError::MaxPayload);
        }
        self.pending = Some(PendingPub {
            subject,
            reply,
            header_len,
            total,
        });
        Ok(())
    }
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Start/end offsets of the space- or tab-separated words of a line.
fn split_args(line: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(5);
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        let start = i;
        while i < line.len() && !is_space(line[i]) {
            i += 1;
        }
        if i > start {
            out.push((start, i));
        }
    }
    out
}

fn parse_size(digits: &[u8]) -> Result<usize, ProtoError> {
    if digits.is_empty() || digits.len() > 18 {
        return Err(ProtoError::Parser);
    }
    digits.iter().try_fold(0usize, |n, &d| {
        if !d.is_ascii_digit() {
            return Err(ProtoError::Parser);
        }
        n.checked_mul(10)
            .and_then(|n| n.checked_add(usize::from(d - b'0')))
            .ok_or(ProtoError::Parser)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> Parser {
        Parser::new(64, 1024)
    }

    fn all(p: &mut Parser, buf: &mut BytesMut) -> Result<Vec<Op>, ProtoError> {
        let mut ops = Vec::new();
        while let Some(op) = p.next(buf)? {
            ops.push(op);
        }
        Ok(ops)
    }

    #[test]
    fn pipelined_commands_in_one_buffer() {
        let mut buf = BytesMut::from(
            &b"sub foo 1\r\nPUB foo 5\r\nhello\r\nHPUB foo r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n\tping \r\nPONG\nUNSUB 1 3\r\n"[..],
        );
        let ops = all(&mut parser(), &mut buf).unwrap();
        assert_eq!(ops.len(), 6);
        assert_eq!(
            ops[1],
            Op::Pub {
                subject: Bytes::from_static(b"foo"),
                reply: None,
                header_len: None,
                message: Bytes::from_static(b"hello"),
            }
        );
        assert_eq!(
            ops[2],
            Op::Pub {
                subject: Bytes::from_static(b"foo"),
                reply: Some(Bytes::from_static(b"r")),
                header_len: Some(12),
                message: Bytes::from_static(b"NATS/1.0\r\n\r\nhi"),
            }
        );
        assert_eq!(ops[3], Op::Ping);
        assert_eq!(ops[4], Op::Pong);
        assert_eq!(
            ops[5],
            Op::Unsub {
                sid: Bytes::from_static(b"1"),
                max: Some(3)
            }
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn split_at_every_byte() {
        let input = b"PUB a.b reply 11\r\nhello world\r\nSUB a.* q 7\r\n";
        let mut p = parser();
        let mut buf = BytesMut::new();
        let mut ops = Vec::new();
        for b in input {
            buf.extend_from_slice(&[*b]);
            ops.extend(all(&mut p, &mut buf).unwrap());
        }
        assert_eq!(ops.len(), 2);
        assert!(matches!(&ops[0], Op::Pub { message, .. } if &message[..] == b"hello world"));
        assert!(matches!(&ops[1], Op::Sub { queue: Some(q), .. } if &q[..] == b"q"));
    }

    #[test]
    fn connect_keeps_json_with_spaces() {
        let mut buf = BytesMut::from(&b"CONNECT {\"verbose\": true, \"name\": \"a b\"}\r\n"[..]);
        let ops = all(&mut parser(), &mut buf).unwrap();
        assert_eq!(
            ops,
            vec![Op::Connect(Bytes::from_static(
                b"{\"verbose\": true, \"name\": \"a b\"}"
            ))]
        );
    }

    #[test]
    fn errors() {
        let cases: &[(&[u8], ProtoError)] = &[
            (b"HELLO WORLD\r\n", ProtoError::UnknownOperation),
            (b"PUB foo x\r\n", ProtoError::Parser),
            (b"PUB foo\r\n", ProtoError::Parser),
            (b"PUB foo 1 2 3\r\n", ProtoError::Parser),
            (b"HPUB foo 5 2\r\n", ProtoError::Parser),
            (b"SUB foo\r\n", ProtoError::Parser),
            (b"UNSUB\r\n", ProtoError::Parser),
            (b"UNSUB 1 -2\r\n", ProtoError::Parser),
            (b"PUB foo 2000\r\n", ProtoError::MaxPayload),
            (b"PUB foo 3\r\nabcd\r\n", ProtoError::Parser),
            (&[b'x'; 100], ProtoError::MaxControlLine),
            (b"PUB foo 99999999999999999999999\r\n", ProtoError::Parser),
        ];
        for (input, want) in cases {
            let mut buf = BytesMut::from(*input);
            let got = all(&mut parser(), &mut buf);
            assert_eq!(
                got.as_ref(),
                Err(want),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn error_texts_match_nats_server() {
        let cases = [
            (
                ProtoError::PublishViolation(Bytes::from_static(b"a.b")),
                "-ERR 'Permissions Violation for Publish to \"a.b\"'\r\n",
            ),
            (
                ProtoError::SubscribeViolation {
                    subject: Bytes::from_static(b">"),
                    queue: None,
                },
                "-ERR 'Permissions Violation for Subscription to \">\"'\r\n",
            ),
            (
                ProtoError::SubscribeViolation {
                    subject: Bytes::from_static(b"q\"x"),
                    queue: Some(Bytes::from_static(b"workers")),
                },
                "-ERR 'Permissions Violation for Subscription to \"q\\\"x\" using queue \"workers\"'\r\n",
            ),
            (
                ProtoError::TlsRequired,
                "-ERR 'Secure Connection - TLS Required'\r\n",
            ),
            (
                ProtoError::AuthorizationViolation,
                "-ERR 'Authorization Violation'\r\n",
            ),
            (
                ProtoError::AuthenticationTimeout,
                "-ERR 'Authentication Timeout'\r\n",
            ),
            (
                ProtoError::MaxConnections,
                "-ERR 'maximum connections exceeded'\r\n",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(String::from_utf8(err.wire()).unwrap(), want);
        }
    }

    #[test]
    fn incomplete_input_waits() {
        let mut p = parser();
        let mut buf = BytesMut::from(&b"PUB foo 5\r\nhel"[..]);
        assert_eq!(p.next(&mut buf), Ok(None));
        assert_eq!(p.payload_wanted(), 7);
        buf.extend_from_slice(b"lo\r");
        assert_eq!(p.next(&mut buf), Ok(None));
        buf.extend_from_slice(b"\n");
        assert!(p.next(&mut buf).unwrap().is_some());
    }

    /// Tiny deterministic generator, so the fuzz cases are reproducible.
    pub(crate) struct Lcg(pub u64);

    impl Lcg {
        pub(crate) fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % n
        }
    }

    #[test]
    fn never_panics_on_protocol_shaped_noise() {
        const PIECES: &[&[u8]] = &[
            b"PUB ",
            b"HPUB ",
            b"SUB ",
            b"UNSUB ",
            b"PING",
            b"PONG",
            b"CONNECT {}",
            b"MSG ",
            b" ",
            b"\t",
            b"\r\n",
            b"\n",
            b"\r",
            b"a",
            b".",
            b"*",
            b">",
            b"0",
            b"1",
            b"5",
            b"12",
            b"99999999999999999999",
            b"x",
            b"\xff",
            b"\0",
        ];
        let mut rng = Lcg(7);
        for _ in 0..2000 {
            let mut input = Vec::new();
            for _ in 0..rng.below(40) {
                input.extend_from_slice(PIECES[rng.below(PIECES.len())]);
            }
            let mut p = Parser::new(64, 32);
            let mut buf = BytesMut::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let n = 1 + rng.below(rest.len());
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                match all(&mut p, &mut buf) {
                    Ok(_) => {}
                    Err(_) => {
                        p = Parser::new(64, 32);
                        buf.clear();
                    }
                }
            }
        }
    }
}
