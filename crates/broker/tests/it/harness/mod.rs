//! Test fixtures shared by the integration tests: start a broker on an
//! ephemeral loopback port, a raw protocol client (plain or TLS) for edge
//! cases, and a throwaway PKI.
#![allow(dead_code)]

pub(crate) mod pki;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use muster_broker::{Broker, BrokerConfig, BrokerHandle, BrokerStats};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The bound on every wait in the tests.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test if it takes longer than [`WAIT`].
pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

pub(crate) fn config() -> BrokerConfig {
    BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..BrokerConfig::default()
    }
}

pub(crate) async fn start() -> BrokerHandle {
    start_with(config()).await
}

pub(crate) async fn start_with(config: BrokerConfig) -> BrokerHandle {
    Broker::start(config).await.expect("broker starts")
}

/// Polls the broker's stats until `done` holds.
pub(crate) async fn stats_until(
    broker: &BrokerHandle,
    done: impl Fn(&BrokerStats) -> bool,
) -> BrokerStats {
    within("broker stats", async {
        loop {
            let stats = broker.stats();
            if done(&stats) {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// A message as a raw client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawMsg {
    /// The MSG/HMSG line without its CRLF.
    pub line: String,
    /// Headers and payload.
    pub data: Vec<u8>,
}

/// A byte stream the raw client runs over: plain TCP or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A hand-driven protocol client.
pub(crate) struct Raw {
    stream: Box<dyn Io>,
    buf: Vec<u8>,
    pub info: String,
}

impl Raw {
    /// Connects, reads the INFO line and sends `CONNECT {}`, as every real
    /// client does (the broker closes clients that send no CONNECT within
    /// its auth timeout).
    pub(crate) async fn connect(addr: SocketAddr) -> Raw {
        let mut raw = Raw::open(addr).await;
        raw.send("CONNECT {}\r\n").await;
        raw
    }

    /// Connects and reads the INFO line; sends nothing.
    pub(crate) async fn open(addr: SocketAddr) -> Raw {
        let stream = within("connect", TcpStream::connect(addr))
            .await
            .expect("connects");
        Raw::greet(stream).await
    }

    /// Connects with a tiny receive buffer, for a client that never reads.
    pub(crate) async fn connect_small_buffer(addr: SocketAddr) -> Raw {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = within("connect", socket.connect(addr))
            .await
            .expect("connects");
        let mut raw = Raw::greet(stream).await;
        raw.send("CONNECT {}\r\n").await;
        raw
    }

    async fn greet(stream: TcpStream) -> Raw {
        stream.set_nodelay(true).unwrap();
        let mut raw = Raw::over(Box::new(stream));
        let info = raw.line().await;
        assert!(info.starts_with("INFO {"), "first line is INFO: {info}");
        raw.info = info;
        raw
    }

    /// A raw client over an established stream (no INFO read).
    pub(crate) fn over(stream: Box<dyn Io>) -> Raw {
        Raw {
            stream,
            buf: Vec::new(),
            info: String::new(),
        }
    }

    /// Connects to a TLS broker: reads INFO in plain text, then runs the TLS
    /// handshake. Sends nothing else. Fails if the handshake fails.
    pub(crate) async fn tls(addr: SocketAddr, config: rustls::ClientConfig) -> Raw {
        let (info, tls) = tls_handshake(addr, config).await;
        let mut raw = Raw::over(Box::new(tls.expect("TLS handshake")));
        raw.info = info;
        raw
    }

    pub(crate) async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).await.expect("write");
    }

    /// Sends PING and reads up to the PONG, returning the lines before it.
    pub(crate) async fn ping(&mut self) -> Vec<String> {
        self.send("PING\r\n").await;
        let mut before = Vec::new();
        loop {
            let line = self.line().await;
            if line == "PONG" {
                return before;
            }
            before.push(line);
        }
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16 * 1024];
        let n = within("bytes from the broker", self.stream.read(&mut chunk))
            .await
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// The next line, without CRLF. Panics on EOF.
    pub(crate) async fn line(&mut self) -> String {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).take(pos).collect();
                return String::from_utf8(line).expect("utf-8 line");
            }
            if self.fill().await == 0 {
                panic!(
                    "connection closed; pending {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    async fn exactly(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            if self.fill().await == 0 {
                panic!("connection closed mid-message");
            }
        }
        self.buf.drain(..n).collect()
    }

    /// The next MSG or HMSG with its data; skips PINGs from the broker.
    pub(crate) async fn msg(&mut self) -> RawMsg {
        loop {
            let line = self.line().await;
            if line == "PING" {
                self.send("PONG\r\n").await;
                continue;
            }
            assert!(
                line.starts_with("MSG ") || line.starts_with("HMSG "),
                "expected a message, got {line}"
            );
            let size: usize = line.rsplit(' ').next().unwrap().parse().unwrap();
            let mut data = self.exactly(size + 2).await;
            assert_eq!(&data[size..], b"\r\n");
            data.truncate(size);
            return RawMsg { line, data };
        }
    }

    /// Reads everything until the broker closes the connection.
    pub(crate) async fn until_closed(&mut self) -> String {
        while self.fill().await > 0 {}
        String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned()
    }
}

/// Connects over TCP, reads INFO in plain text and runs the client side of
/// the TLS upgrade, returning INFO and the handshake's outcome.
pub(crate) async fn tls_handshake(
    addr: SocketAddr,
    config: rustls::ClientConfig,
) -> (
    String,
    std::io::Result<tokio_rustls::client::TlsStream<TcpStream>>,
) {
    let mut stream = within("connect", TcpStream::connect(addr))
        .await
        .expect("connects");
    stream.set_nodelay(true).unwrap();
    let info = read_line(&mut stream).await;
    assert!(info.contains("\"tls_required\":true"), "{info}");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::IpAddress(addr.ip().into());
    let tls = within("TLS handshake", connector.connect(name, stream)).await;
    (info, tls)
}

/// Reads one CRLF-terminated line byte by byte, so nothing after it is consumed.
pub(crate) async fn read_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    within("a line", async {
        while !line.ends_with(b"\r\n") {
            let mut byte = [0u8; 1];
            if stream.read(&mut byte).await.expect("read") == 0 {
                panic!("closed after {:?}", String::from_utf8_lossy(&line));
            }
            line.push(byte[0]);
        }
    })
    .await;
    line.truncate(line.len() - 2);
    String::from_utf8(line).expect("utf-8 line")
}

/// Reads from a socket until the peer closes it (or resets it), returning
/// what arrived.
pub(crate) async fn read_until_closed(stream: &mut (impl AsyncRead + Unpin)) -> String {
    let mut out = Vec::new();
    within("the broker to close", async {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stream.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}
