//! The life of one connection: admit (TLS, certificate, CONNECT deadline),
//! greet, read and parse, act, clean up.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::client::{lock, run_writer, Client};
use crate::connect::parse_connect;
use crate::index::{valid_publish_subject, valid_subscribe_subject, Matches};
use crate::parser::{Op, Parser, ProtoError};
use crate::permissions::Compiled;
use crate::raised;
use crate::router::Router;
use crate::security::{Admission, Security};
use crate::stats::{ClientName, Origin};

const READ_CHUNK: usize = 64 * 1024;
/// How often the broker PINGs a client; two unanswered PINGs drop it.
pub(crate) const PING_INTERVAL: Duration = Duration::from_secs(120);
pub(crate) const MAX_PINGS_OUT: u32 = 2;
/// How long a closing connection may take to flush its last bytes.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a refused connection is kept to deliver its `-ERR` (reading what
/// the client sent meanwhile, so closing does not reset the connection and
/// lose the error), and how much is read at most.
const LINGER: Duration = Duration::from_millis(500);
const LINGER_READ_LIMIT: usize = 256 * 1024;
/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// One place among `max_connections`; given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// Takes a place unless `max` are taken. Only the accept loop takes places.
    pub(crate) fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        if open.load(Ordering::Acquire) >= max {
            return None;
        }
        open.fetch_add(1, Ordering::AcqRel);
        Some(Slot(open.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Per-connection state the reader owns.
struct Session {
    router: Arc<Router>,
    client: Arc<Client>,
    verbose: bool,
    pings_out: u32,
    matches: Matches,
    /// CONNECT has arrived.
    connected: bool,
    /// Only CONNECT and PING are accepted before CONNECT (TLS mode).
    connect_first: bool,
    /// What the client may do; `None` allows everything.
    perms: Option<Compiled>,
    /// Who the client is, from admission.
    name: Option<String>,
    /// Permission violations so far; only the first is logged above debug.
    violations: u64,
}

impl Session {
    fn handle(&mut self, op: Op) -> Result<(), ProtoError> {
        if self.connect_first && !self.connected && !matches!(op, Op::Connect(_) | Op::Ping) {
            return Err(ProtoError::AuthorizationViolation);
        }
        match op {
            Op::Connect(json) => {
                let opts = parse_connect(&json).map_err(|e| {
                    tracing::debug!(client = self.client.id, error = %e, "CONNECT refused");
                    ProtoError::Parser
                })?;
                self.client.apply(&opts);
                *lock(&self.client.stats.name) = ClientName::from_connect(&json);
                self.verbose = opts.verbose;
                self.connected = true;
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
                if let Some(perms) = &self.perms {
                    if !perms.may_publish(&subject) {
                        return Err(ProtoError::PublishViolation(subject));
                    }
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
            } => {
                if let Some(perms) = &self.perms {
                    // An invalid subject gets its own error from subscribe().
                    if valid_subscribe_subject(&subject) && !perms.may_subscribe(&subject) {
                        return Err(ProtoError::SubscribeViolation { subject, queue });
                    }
                }
                self.router.subscribe(&self.client, subject, queue, sid)?
            }
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

    /// Answers an error and counts it. Returns true if the connection must close.
    fn error(&mut self, err: ProtoError, peer: SocketAddr) -> bool {
        let counters = &self.router.counters;
        let fatal = err.fatal();
        let client = self.client.id;
        let name = self.name.as_deref().unwrap_or("");
        match &err {
            ProtoError::PublishViolation(_) | ProtoError::SubscribeViolation { .. } => {
                counters.permission_violation();
                self.violations += 1;
                if self.violations == 1 {
                    tracing::info!(client, %peer, name, error = %err, "permission violation");
                } else {
                    tracing::debug!(client, %peer, name, error = %err, "permission violation");
                }
            }
            ProtoError::AuthorizationViolation => {
                counters.authorization_refused();
                tracing::info!(client, %peer, name, "protocol before CONNECT, refused");
            }
            ProtoError::AuthenticationTimeout => {
                counters.auth_timeout();
                tracing::debug!(client, %peer, name, "no CONNECT before the auth timeout");
            }
            _ => {
                counters.protocol_error();
                tracing::debug!(client, %peer, error = %err, fatal, "protocol error");
            }
        }
        self.client.send(&err.wire());
        fatal
    }
}

/// Serves one client until it leaves, breaks the protocol, is too slow, or
/// the broker shuts down. `slot` is its place among `max_connections`.
pub(crate) async fn serve(
    router: Arc<Router>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
    slot: Slot,
) {
    let _ = stream.set_nodelay(true);
    // TLS and CONNECT must both be done by then.
    let deadline = Instant::now() + router.config.auth_timeout;
    let id = router.next_client_id();
    match router.config.security.clone() {
        None => {
            let (reader, writer) = stream.into_split();
            let client = router.new_client(id, Origin::plain(peer));
            tracing::debug!(client = client.id, %peer, "client connected");
            client.send(&router.info(id, peer));
            let conn = Conn {
                router,
                client,
                peer,
                deadline,
                admission: None,
            };
            conn.run(reader, writer, shutdown, slot).await;
        }
        Some(security) => {
            let secured = tokio::select! {
                biased;
                _ = raised(&mut shutdown) => None,
                secured = secure(&router, &security, stream, peer, id, deadline) => secured,
            };
            let Some((tls, admission)) = secured else {
                return;
            };
            let origin = Origin::tls(peer, tls.get_ref().1, &admission.name);
            let (reader, writer) = tokio::io::split(tls);
            let client = router.new_client(id, origin);
            tracing::debug!(client = client.id, %peer, name = %admission.name, "client connected");
            let conn = Conn {
                router,
                client,
                peer,
                deadline,
                admission: Some(admission),
            };
            conn.run(reader, writer, shutdown, slot).await;
        }
    }
}

/// Answers a client we will not serve with one `-ERR` and closes.
pub(crate) async fn refuse(stream: TcpStream, err: ProtoError) {
    let _ = stream.set_nodelay(true);
    close_with(stream, &err).await;
}

/// Writes `err`, closes our side, and reads (and drops) what the client still
/// sends until it closes too, within [`LINGER`]. Closing a socket with unread
/// input resets the connection, and the client might never see the error.
async fn close_with<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, err: &ProtoError) {
    let _ = timeout(LINGER, async {
        stream.write_all(&err.wire()).await?;
        stream.flush().await?;
        stream.shutdown().await?;
        drain(&mut stream).await
    })
    .await;
}

/// Reads until EOF or [`LINGER_READ_LIMIT`] bytes.
async fn drain<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<()> {
    let mut sink = vec![0u8; 16 * 1024];
    let mut total = 0;
    while total < LINGER_READ_LIMIT {
        match stream.read(&mut sink).await? {
            0 => break,
            n => total += n,
        }
    }
    Ok(())
}

/// The TLS upgrade and admission: INFO in plain text, a TLS handshake
/// requiring a client certificate, then the caller's `admit`. Returns `None`
/// (having answered and counted) when the client is not let in.
async fn secure(
    router: &Router,
    security: &Security,
    mut stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    deadline: Instant,
) -> Option<(TlsStream<TcpStream>, Admission)> {
    let counters = &router.counters;
    let info = router.info(id, peer);
    let first = timeout_at(deadline, async {
        stream.write_all(&info).await?;
        let mut first = [0u8; 1];
        let n = stream.peek(&mut first).await?;
        Ok::<_, io::Error>((n > 0).then_some(first[0]))
    })
    .await;
    match first {
        Err(_elapsed) => {
            counters.auth_timeout();
            tracing::debug!(%peer, "no TLS handshake before the auth timeout");
            close_with(stream, &ProtoError::AuthenticationTimeout).await;
            return None;
        }
        Ok(Err(err)) => {
            tracing::debug!(%peer, %err, "connection failed before TLS");
            return None;
        }
        Ok(Ok(None)) => {
            tracing::debug!(%peer, "client left before TLS");
            return None;
        }
        Ok(Ok(Some(TLS_HANDSHAKE))) => {}
        Ok(Ok(Some(_))) => {
            counters.tls_required_refused();
            tracing::debug!(%peer, "plain text on the TLS port, refused");
            close_with(stream, &ProtoError::TlsRequired).await;
            return None;
        }
    }

    let acceptor = TlsAcceptor::from(security.tls.clone());
    let tls = match timeout_at(deadline, acceptor.accept(stream).into_fallible()).await {
        Err(_elapsed) => {
            counters.auth_timeout();
            tracing::info!(%peer, "TLS handshake not finished before the auth timeout");
            return None;
        }
        Ok(Err((err, stream))) => {
            // rustls has sent the client an alert saying why.
            counters.tls_handshake_failed();
            tracing::info!(%peer, error = %err, "TLS handshake failed");
            let mut stream = stream;
            let _ = timeout(LINGER, async {
                stream.shutdown().await?;
                drain(&mut stream).await
            })
            .await;
            return None;
        }
        Ok(Ok(tls)) => tls,
    };

    let chain = tls.get_ref().1.peer_certificates().unwrap_or(&[]);
    match (security.admit)(chain) {
        Ok(admission) => {
            tracing::debug!(client = id, %peer, name = %admission.name, "client admitted");
            Some((tls, admission))
        }
        Err(refusal) => {
            counters.authorization_refused();
            tracing::warn!(%peer, %refusal, "client certificate not admitted");
            close_with(tls, &ProtoError::AuthorizationViolation).await;
            None
        }
    }
}

/// An admitted connection, about to be served.
struct Conn {
    router: Arc<Router>,
    client: Arc<Client>,
    peer: SocketAddr,
    /// CONNECT must arrive by then.
    deadline: Instant,
    admission: Option<Admission>,
}

impl Conn {
    /// Reads and acts until the connection ends, over plain TCP halves or TLS
    /// halves alike.
    async fn run<R, W>(
        self,
        mut socket: R,
        writer: W,
        mut shutdown: watch::Receiver<bool>,
        slot: Slot,
    ) where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let Conn {
            router,
            client,
            peer,
            deadline,
            admission,
        } = self;
        let mut writer = tokio::spawn(run_writer(client.clone(), writer));
        let mut aborted = client.aborted();

        let mut parser = Parser::new(router.config.max_control_line, router.config.max_payload);
        let secured = admission.is_some();
        let (name, perms) = match admission {
            Some(a) => (Some(a.name), Some(Compiled::new(&a.permissions))),
            None => (None, None),
        };
        let mut session = Session {
            router: router.clone(),
            client: client.clone(),
            verbose: false,
            pings_out: 0,
            matches: Matches::default(),
            connected: false,
            connect_first: secured,
            perms,
            name,
            violations: 0,
        };
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
        let auth_timeout = tokio::time::sleep_until(deadline);
        tokio::pin!(auth_timeout);

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
                _ = &mut auth_timeout, if !session.connected => {
                    session.error(ProtoError::AuthenticationTimeout, peer);
                    break;
                }
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
        if timeout(FLUSH_TIMEOUT, &mut writer).await.is_err() {
            client.abort();
            let _ = writer.await;
        }
        // The place is free by the time the gauge says so.
        drop(slot);
        router.forget(client.id);
        router.counters.disconnected();
        tracing::debug!(client = client.id, %peer, "client disconnected");
    }
}
