//! A wide-area network on loopback: a TCP proxy that delays bytes.
//!
//! Discovery that ends when replies go quiet has to be tried against
//! nodes whose replies are slow and uneven, and changing the kernel's
//! queueing (`tc netem`) needs root. [`LatencyProxy`] listens on an
//! ephemeral loopback port and forwards every connection to a target,
//! holding each chunk of data, in each direction, for a one-way delay
//! plus random jitter. Release times never go backwards, so jitter delays
//! bytes but never reorders them. It is a byte proxy: TLS passes through
//! untouched, and as the test broker's certificate names `127.0.0.1`, a
//! node connecting to the proxy still verifies the broker.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::time::Duration;
//! use muster_testkit::LatencyProxy;
//!
//! let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
//! let target = echo.local_addr().unwrap();
//! std::thread::spawn(move || {
//!     let (mut socket, _) = echo.accept().unwrap();
//!     let mut buf = [0; 5];
//!     socket.read_exact(&mut buf).unwrap();
//!     socket.write_all(&buf).unwrap();
//! });
//! let proxy = LatencyProxy::start(target, Duration::from_millis(10), Duration::ZERO);
//! let mut socket = std::net::TcpStream::connect(proxy.addr()).unwrap();
//! socket.write_all(b"hello").unwrap();
//! let mut back = [0; 5];
//! socket.read_exact(&mut back).unwrap();
//! assert_eq!(&back, b"hello");
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Chunks in flight per direction before the reader waits: a bound on
/// memory (64 KiB each), far above what a test sends within one delay.
const IN_FLIGHT: usize = 1024;

/// A latency-injecting TCP proxy on its own runtime thread, stopped when
/// dropped (its listener and every connection through it are closed).
pub struct LatencyProxy {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

/// How long each chunk is held, in one direction.
#[derive(Debug, Clone, Copy)]
struct Delay {
    base: Duration,
    jitter: Duration,
}

impl LatencyProxy {
    /// Listens on `127.0.0.1:0` and forwards each connection to `target`,
    /// holding data in each direction for `delay` ± up to `jitter`
    /// (uniform; the round trip is about twice that).
    pub fn start(target: SocketAddr, delay: Duration, jitter: Duration) -> LatencyProxy {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("latency proxy: bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("latency proxy: non-blocking listener");
        let addr = listener.local_addr().expect("latency proxy: local address");
        // Its own thread: the proxy keeps time even when a test's runtime is busy.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("latency-proxy")
            .enable_all()
            .build()
            .expect("latency proxy: runtime");
        let delay = Delay {
            base: delay,
            jitter,
        };
        runtime.spawn(async move {
            let listener = match TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::error!(error = %e, "latency proxy: cannot listen");
                    return;
                }
            };
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    // Out of descriptors, say: try again later, not in a spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                tokio::spawn(async move {
                    match TcpStream::connect(target).await {
                        Ok(outbound) => splice(inbound, outbound, delay),
                        Err(e) => {
                            tracing::warn!(%target, error = %e, "latency proxy: cannot reach the target");
                        }
                    }
                });
            }
        });
        LatencyProxy {
            addr,
            runtime: Some(runtime),
        }
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `tls://<addr>`: a broker URL through the proxy.
    pub fn url(&self) -> String {
        format!("tls://{}", self.addr)
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        // Drops every task, and with them the listener and the sockets,
        // without blocking (a test may drop it inside its own runtime).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Two delayed pipes, one per direction, each a reader and a writer.
fn splice(inbound: TcpStream, outbound: TcpStream, delay: Delay) {
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    pipe(in_read, out_write, delay);
    pipe(out_read, in_write, delay);
}

/// Reads chunks from `from`, stamps each with its release time and hands
/// them to a writer that sleeps until then: a timestamped queue, in order.
/// End of input is released the same way (as a shutdown of `to`).
fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Delay) {
    let (queue, mut held) = mpsc::channel::<(Instant, Option<Vec<u8>>)>(IN_FLIGHT);
    tokio::spawn(async move {
        let mut jitter = Jitter::new();
        let mut last = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let read = from.read(&mut buf).await;
            let chunk = match read {
                Ok(0) | Err(_) => None,
                Ok(n) => Some(buf[..n].to_vec()),
            };
            // Never before the chunk ahead of it: jitter must not reorder.
            let release = (Instant::now() + jitter.sample(delay)).max(last);
            last = release;
            let done = chunk.is_none();
            if queue.send((release, chunk)).await.is_err() || done {
                return;
            }
        }
    });
    tokio::spawn(async move {
        while let Some((release, chunk)) = held.recv().await {
            tokio::time::sleep_until(release).await;
            match chunk {
                Some(bytes) => {
                    if to.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = to.shutdown().await;
                    return;
                }
            }
        }
    });
}

/// A small xorshift generator: jitter needs spread, not secrecy.
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
        static STREAMS: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let stream = STREAMS.fetch_add(1, Ordering::Relaxed);
        // Never zero: xorshift would stay there.
        Jitter((nanos ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// `delay.base` plus a uniform offset in ±`delay.jitter`, never negative.
    fn sample(&mut self, delay: Delay) -> Duration {
        let span = delay.jitter.as_micros() as u64;
        if span == 0 {
            return delay.base;
        }
        let offset = self.next() % (2 * span + 1);
        let up = Duration::from_micros(offset);
        (delay.base + up).saturating_sub(delay.jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// An echo server on its own thread: returns what it reads until EOF,
    /// one connection at a time, at most `connections` of them.
    fn echo(connections: usize) -> SocketAddr {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind echo");
        let addr = listener.local_addr().expect("echo address");
        std::thread::spawn(move || {
            for socket in listener.incoming().take(connections) {
                let Ok(mut socket) = socket else { return };
                let mut buf = [0u8; 4096];
                while let Ok(n) = socket.read(&mut buf) {
                    if n == 0 || socket.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        });
        addr
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let mut jitter = Jitter::new();
        let delay = Delay {
            base: 25 * MS,
            jitter: 20 * MS,
        };
        let samples: Vec<Duration> = (0..10_000).map(|_| jitter.sample(delay)).collect();
        assert!(samples.iter().all(|d| (5 * MS..=45 * MS).contains(d)));
        // Spread, not a constant.
        assert!(samples.iter().any(|d| *d < 15 * MS));
        assert!(samples.iter().any(|d| *d > 35 * MS));
        // Jitter larger than the delay clamps at zero.
        let wide = Delay {
            base: MS,
            jitter: 10 * MS,
        };
        assert!((0..1000).all(|_| jitter.sample(wide) <= 11 * MS));
    }

    #[tokio::test]
    async fn bytes_arrive_intact_and_in_order_despite_jitter() {
        let proxy = LatencyProxy::start(echo(1), 5 * MS, 5 * MS);
        let socket = TcpStream::connect(proxy.addr()).await.expect("connect");
        let (mut read, mut write) = socket.into_split();
        // Many small writes, each its own chunk with its own jitter.
        let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let expected = sent.clone();
        let writer = tokio::spawn(async move {
            for piece in sent.chunks(997) {
                write.write_all(piece).await.expect("write");
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            write
        });
        let mut got = vec![0u8; expected.len()];
        tokio::time::timeout(Duration::from_secs(60), read.read_exact(&mut got))
            .await
            .expect("the echo came back within 60 s")
            .expect("read the echo");
        assert!(got == expected, "bytes were lost or reordered");
        drop(writer.await);
    }

    #[tokio::test]
    async fn a_round_trip_takes_at_least_twice_the_delay() {
        let delay = 40 * MS;
        let proxy = LatencyProxy::start(echo(1), delay, Duration::ZERO);
        let mut socket = TcpStream::connect(proxy.addr()).await.expect("connect");
        for _ in 0..3 {
            let started = std::time::Instant::now();
            socket.write_all(b"ping").await.expect("write");
            let mut back = [0u8; 4];
            socket.read_exact(&mut back).await.expect("read");
            assert_eq!(&back, b"ping");
            let took = started.elapsed();
            assert!(took >= 2 * delay, "a round trip took only {took:?}");
        }
    }

    #[tokio::test]
    async fn dropping_the_proxy_closes_its_connections_and_listener() {
        let proxy = LatencyProxy::start(echo(1), MS, Duration::ZERO);
        let addr = proxy.addr();
        let mut socket = TcpStream::connect(addr).await.expect("connect");
        socket.write_all(b"x").await.expect("write");
        let mut back = [0u8; 1];
        socket.read_exact(&mut back).await.expect("read");
        drop(proxy);
        // The connection ends (EOF or reset), within a generous bound.
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = [0u8; 16];
            loop {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the proxied connection stayed open");
        // And nothing listens any more (bounded: the runtime stops in the background).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).await.is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "the proxy still listens on {addr}"
            );
            tokio::time::sleep(10 * MS).await;
        }
    }
}
