//! Test fixtures shared by the integration tests: start a broker on an
//! ephemeral loopback port, and a raw protocol client for edge cases.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use muster_broker::{Broker, BrokerConfig, BrokerHandle, BrokerStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The bound on every wait in the tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test if it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

pub fn config() -> BrokerConfig {
    BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..BrokerConfig::default()
    }
}

pub async fn start() -> BrokerHandle {
    start_with(config()).await
}

pub async fn start_with(config: BrokerConfig) -> BrokerHandle {
    Broker::start(config).await.expect("broker starts")
}

/// Polls the broker's stats until `done` holds.
pub async fn stats_until(
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
pub struct RawMsg {
    /// The MSG/HMSG line without its CRLF.
    pub line: String,
    /// Headers and payload.
    pub data: Vec<u8>,
}

/// A hand-driven protocol client over a plain TCP stream.
pub struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
    pub info: String,
}

impl Raw {
    /// Connects and reads the INFO line.
    pub async fn connect(addr: SocketAddr) -> Raw {
        let stream = within("connect", TcpStream::connect(addr))
            .await
            .expect("connects");
        Raw::greet(stream).await
    }

    /// Connects with a tiny receive buffer, for a client that never reads.
    pub async fn connect_small_buffer(addr: SocketAddr) -> Raw {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = within("connect", socket.connect(addr))
            .await
            .expect("connects");
        Raw::greet(stream).await
    }

    async fn greet(stream: TcpStream) -> Raw {
        stream.set_nodelay(true).unwrap();
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
            info: String::new(),
        };
        let info = raw.line().await;
        assert!(info.starts_with("INFO {"), "first line is INFO: {info}");
        raw.info = info;
        raw
    }

    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).await.expect("write");
    }

    /// Sends PING and reads up to the PONG, returning the lines before it.
    pub async fn ping(&mut self) -> Vec<String> {
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
    pub async fn line(&mut self) -> String {
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
    pub async fn msg(&mut self) -> RawMsg {
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
    pub async fn until_closed(&mut self) -> String {
        while self.fill().await > 0 {}
        String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned()
    }
}
