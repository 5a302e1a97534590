//! One connected client as the rest of the broker sees it: its options, its
//! subscriptions and its outbound queue.
//!
//! Publishers never touch another client's socket. They append encoded
//! messages to the receiver's queue and wake its writer task, which swaps the
//! whole queue out and writes it in one go. A queue that grows past
//! `max_pending` marks a slow consumer: it is dropped, everyone else carries on.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{watch, Notify};

use crate::connect::ConnectOptions;
use crate::index::Sub;
use crate::parser::ProtoError;
use crate::raised;
use crate::stats::{ClientStats, Counters};

/// A writer batch buffer larger than this is not kept for reuse after a burst.
const KEEP_BATCH_CAPACITY: usize = 1 << 20;
/// How long the last words (an error after an abort, a TLS close_notify) may
/// take to go out: the peer may not be reading at all.
const FAREWELL_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(250);

#[derive(Debug, Default)]
struct Outbound {
    buf: BytesMut,
    /// No more messages are accepted; the writer flushes what is queued and stops.
    closing: bool,
    /// Written best effort after an abort (the queue itself is discarded).
    farewell: Option<Vec<u8>>,
}

pub(crate) struct Client {
    pub id: u64,
    out: Mutex<Outbound>,
    wake: Notify,
    abort: watch::Sender<bool>,
    max_pending: usize,
    counters: Arc<Counters>,
    echo: AtomicBool,
    headers: AtomicBool,
    no_responders: AtomicBool,
    /// Subscriptions by sid.
    pub subs: Mutex<HashMap<Bytes, Arc<Sub>>>,
    /// Traffic and description for the monitoring pages.
    pub stats: ClientStats,
}

impl fmt::Debug for Client {
    // Subscriptions point back at their client, so print only the id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Locks a mutex, carrying on if a panicking thread poisoned it: every
/// critical section leaves the data consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Client {
    pub(crate) fn new(id: u64, max_pending: usize, counters: Arc<Counters>) -> Self {
        let defaults = ConnectOptions::default();
        Client {
            id,
            out: Mutex::new(Outbound::default()),
            wake: Notify::new(),
            abort: watch::channel(false).0,
            max_pending,
            counters,
            echo: AtomicBool::new(defaults.echo),
            headers: AtomicBool::new(defaults.headers),
            no_responders: AtomicBool::new(defaults.no_responders),
            subs: Mutex::new(HashMap::new()),
            stats: ClientStats::default(),
        }
    }

    pub(crate) fn apply(&self, opts: &ConnectOptions) {
        self.echo.store(opts.echo, Ordering::Relaxed);
        self.headers.store(opts.headers, Ordering::Relaxed);
        self.no_responders
            .store(opts.no_responders, Ordering::Relaxed);
    }

    pub(crate) fn echo(&self) -> bool {
        self.echo.load(Ordering::Relaxed)
    }

    pub(crate) fn headers(&self) -> bool {
        self.headers.load(Ordering::Relaxed)
    }

    pub(crate) fn wants_no_responders(&self) -> bool {
        self.headers() && self.no_responders.load(Ordering::Relaxed)
    }

    /// Bytes queued for this client and not yet written.
    pub(crate) fn pending(&self) -> usize {
        lock(&self.out).buf.len()
    }

    /// Queues raw protocol bytes. Returns false if the client is closing.
    pub(crate) fn send(&self, bytes: &[u8]) -> bool {
        self.push(|buf| buf.extend_from_slice(bytes))
    }

    /// Queues a MSG (or HMSG when there are headers and the client announced
    /// header support; otherwise the headers are stripped, as nats-server does).
    pub(crate) fn send_msg(
        &self,
        subject: &[u8],
        sid: &[u8],
        reply: Option<&[u8]>,
        header_len: Option<usize>,
        message: &[u8],
    ) -> bool {
        let (header_len, message) = match header_len {
            Some(h) if self.headers() => (Some(h), message),
            Some(h) => (None, &message[h..]),
            None => (None, message),
        };
        self.push(|buf| {
            buf.reserve(subject.len() + sid.len() + message.len() + 64);
            buf.put_slice(if header_len.is_some() {
                b"HMSG "
            } else {
                b"MSG "
            });
            buf.put_slice(subject);
            buf.put_u8(b' ');
            buf.put_slice(sid);
            buf.put_u8(b' ');
            if let Some(reply) = reply {
                buf.put_slice(reply);
                buf.put_u8(b' ');
            }
            if let Some(h) = header_len {
                put_decimal(buf, h);
                buf.put_u8(b' ');
            }
            put_decimal(buf, message.len());
            buf.put_slice(b"\r\n");
            buf.put_slice(message);
            buf.put_slice(b"\r\n");
        })
    }

    fn push(&self, encode: impl FnOnce(&mut BytesMut)) -> bool {
        let mut out = lock(&self.out);
        if out.closing {
            return false;
        }
        encode(&mut out.buf);
        if out.buf.len() > self.max_pending {
            out.closing = true;
            out.buf = BytesMut::new();
            out.farewell = Some(ProtoError::SlowConsumer.wire());
            drop(out);
            self.counters.slow_consumer();
            tracing::warn!(
                client = self.id,
                max_pending = self.max_pending,
                "slow consumer, dropping client"
            );
            self.abort();
            return false;
        }
        drop(out);
        self.wake.notify_one();
        true
    }

    /// Stops accepting messages; the writer flushes what is queued, then closes.
    pub(crate) fn close(&self) {
        lock(&self.out).closing = true;
        self.wake.notify_one();
    }

    /// Closes at once, discarding whatever is queued.
    pub(crate) fn abort(&self) {
        lock(&self.out).closing = true;
        self.abort.send_replace(true);
    }

    pub(crate) fn aborted(&self) -> watch::Receiver<bool> {
        self.abort.subscribe()
    }
}

fn put_decimal(buf: &mut BytesMut, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.put_slice(&digits[i..]);
}

/// Drains the client's queue into the socket (plain TCP or TLS), one write per
/// batch, until the client is closed (after flushing) or aborted (without).
pub(crate) async fn run_writer<W: AsyncWrite + Unpin>(client: Arc<Client>, mut socket: W) {
    let mut aborted = client.aborted();
    let mut batch = BytesMut::with_capacity(64 * 1024);
    loop {
        if *aborted.borrow() {
            break;
        }
        let closing = {
            let mut out = lock(&client.out);
            std::mem::swap(&mut out.buf, &mut batch);
            out.closing
        };
        if !batch.is_empty() {
            tokio::select! {
                biased;
                _ = raised(&mut aborted) => break,
                // write_all then flush: TLS buffers inside the stream.
                written = async { socket.write_all(&batch).await?; socket.flush().await } => {
                    if let Err(err) = written {
                        tracing::debug!(client = client.id, %err, "write failed");
                        client.abort();
                        break;
                    }
                }
            }
            batch.clear();
            if batch.capacity() > KEEP_BATCH_CAPACITY {
                batch = BytesMut::with_capacity(64 * 1024);
            }
            continue;
        }
        if closing {
            break;
        }
        tokio::select! {
            biased;
            _ = raised(&mut aborted) => break,
            _ = client.wake.notified() => {}
        }
    }
    let farewell = lock(&client.out).farewell.take();
    // The socket is likely full after an abort: best effort only, bounded.
    let _ = tokio::time::timeout(FAREWELL_TIMEOUT, async {
        if let Some(farewell) = farewell {
            socket.write_all(&farewell).await?;
        }
        socket.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_msg_and_hmsg() {
        let counters = Arc::new(Counters::default());
        let c = Client::new(1, 1 << 20, counters);
        c.send_msg(b"a.b", b"7", None, None, b"hi");
        c.send_msg(b"a.b", b"7", Some(b"r.1"), Some(5), b"H\r\n\r\nhi");
        c.apply(&ConnectOptions {
            headers: true,
            ..Default::default()
        });
        c.send_msg(b"a.b", b"12", Some(b"r.1"), Some(5), b"H\r\n\r\nhi");
        let out = lock(&c.out).buf.clone();
        assert_eq!(
            &out[..],
            &b"MSG a.b 7 2\r\nhi\r\nMSG a.b 7 r.1 2\r\nhi\r\nHMSG a.b 12 r.1 5 7\r\nH\r\n\r\nhi\r\n"[..]
        );
    }

    #[test]
    fn overflow_is_a_slow_consumer() {
        let counters = Arc::new(Counters::default());
        let c = Client::new(1, 100, counters.clone());
        assert!(c.send(&[b'x'; 60]));
        assert!(!c.send(&[b'x'; 60]));
        assert!(!c.send(b"x"));
        assert!(*c.aborted().borrow());
        assert_eq!(counters.snapshot().slow_consumers, 1);
    }

    #[test]
    fn decimal() {
        for n in [0usize, 7, 10, 1234567890, usize::MAX] {
            let mut b = BytesMut::new();
            put_decimal(&mut b, n);
            assert_eq!(&b[..], n.to_string().as_bytes());
        }
    }
}
