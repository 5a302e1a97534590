//! The life of one TCP connection: greet, read and parse, act, clean up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::{run_writer, Client};
use crate::index::{valid_publish_subject, Matches};
use crate::json::parse_connect;
use crate::parser::{Op, Parser, ProtoError};
use crate::raised;
use crate::router::Router;

const READ_CHUNK: usize = 64 * 1024;
/// How often the broker PINGs a client; two unanswered PINGs drop it.
const PING_INTERVAL: Duration = Duration::from_secs(120);
const MAX_PINGS_OUT: u32 = 2;
/// How long a closing connection may take to flush its last bytes.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Per-connection state the reader owns.
struct Session {
    router: Arc<Router>,
    client: Arc<Client>,
    verbose: bool,
    pings_out: u32,
    matches: Matches,
}

impl Session {
    fn handle(&mut self, op: Op) -> Result<(), ProtoError> {
        match op {
            Op::Connect(json) => {
                let opts = parse_connect(&json).ok_or(ProtoError::Parser)?;
                self.client.apply(&opts);
                self.verbose = opts.verbose;
            }
            Op::Pub {
                subject,
                reply,
                header_len,
                message,
            } => {
                if !valid_publish_subject(&subject) {
                    return Err(ProtoError::InvalidPublishSubject);
                }
                self.router.publish(
                    &self.client,
                    &subject,
                    reply.as_deref(),
                    header_len,
                    &message,
                    &mut self.matches,
                );
            }
            Op::Sub {
                subject,
                queue,
                sid,
            } => self.router.subscribe(&self.client, subject, queue, sid)?,
            Op::Unsub { sid, max } => self.router.unsubscribe(&self.client, &sid, max),
            Op::Ping => {
                self.client.send(b"PONG\r\n");
                return Ok(());
            }
            Op::Pong => {
                self.pings_out = 0;
                return Ok(());
            }
        }
        if self.verbose {
            self.client.send(b"+OK\r\n");
        }
        Ok(())
    }

    /// Answers a protocol error. Returns true if the connection must close.
    fn error(&self, err: ProtoError, peer: SocketAddr) -> bool {
        self.router.counters.protocol_error();
        let fatal = err.fatal();
        tracing::debug!(client = self.client.id, %peer, error = %err, fatal, "protocol error");
        self.client.send(&err.wire());
        fatal
    }
}

/// Serves one client until it leaves, breaks the protocol, is too slow, or
/// the broker shuts down.
pub(crate) async fn serve(
    router: Arc<Router>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let client = router.new_client();
    tracing::debug!(client = client.id, %peer, "client connected");
    let (mut socket, writer) = stream.into_split();
    client.send(&router.info(client.id, peer));
    let mut writer = tokio::spawn(run_writer(client.clone(), writer));
    let mut aborted = client.aborted();

    let mut parser = Parser::new(router.config.max_control_line, router.config.max_payload);
    let mut session = Session {
        router: router.clone(),
        client: client.clone(),
        verbose: false,
        pings_out: 0,
        matches: Matches::default(),
    };
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);

    'connection: loop {
        loop {
            match parser.next(&mut buf) {
                Ok(Some(op)) => {
                    if let Err(err) = session.handle(op) {
                        if session.error(err, peer) {
                            break 'connection;
                        }
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    session.error(err, peer);
                    break 'connection;
                }
            }
        }
        let wanted = parser.payload_wanted().saturating_sub(buf.len());
        buf.reserve(wanted.max(READ_CHUNK));
        tokio::select! {
            biased;
            _ = raised(&mut aborted) => break,
            _ = raised(&mut shutdown) => break,
            _ = ping.tick() => {
                if session.pings_out >= MAX_PINGS_OUT {
                    session.error(ProtoError::StaleConnection, peer);
                    break;
                }
                session.pings_out += 1;
                client.send(b"PING\r\n");
            }
            read = socket.read_buf(&mut buf) => match read {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) => {
                    tracing::debug!(client = client.id, %err, "read failed");
                    break;
                }
            },
        }
    }

    router.drop_subscriptions(&client);
    client.close();
    if tokio::time::timeout(FLUSH_TIMEOUT, &mut writer)
        .await
        .is_err()
    {
        client.abort();
        let _ = writer.await;
    }
    router.counters.disconnected();
    tracing::debug!(client = client.id, %peer, "client disconnected");
}
