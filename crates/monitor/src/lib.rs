//! A small, bounded HTTP server for monitoring pages.
//!
//! `mco broker --monitor ADDR` serves nats-server's `/varz`, `/connz` and
//! `/subsz`; `mco server` serves Prometheus `/metrics`. Both need the same
//! thing: answer `GET` on a few paths with a page built at request time, and
//! never let a scraper (or anyone else who can reach the port) hurt the
//! process being watched. This crate is that server and nothing more. It
//! knows no muster crate: the caller hands it a [`Pages`] function that turns
//! a path and a query into a [`Page`] (or `None` for 404).
//!
//! It is not a web framework. HTTP/1.1 comes from `hyper`; what this crate
//! adds is the bounds:
//!
//! - only `GET` and `HEAD` (anything else is `405 Method Not Allowed`);
//! - a cap on header bytes (hyper's read buffer) and a deadline for the
//!   request head ([`MonitorConfig::header_read_timeout`]), so a slow or
//!   garbage-sending client is dropped;
//! - a cap on connections open at once; past it a new connection gets
//!   `503` and is closed, and nothing else waits for it;
//! - binding a port that is taken fails at start with an error naming the
//!   setting the address came from ([`MonitorError::Bind`]).
//!
//! Prometheus pages are text from the `prometheus-client` crate
//! (re-exported as [`prometheus_client`]); [`Page::prometheus`] encodes a
//! registry.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use muster_monitor::{Monitor, MonitorConfig, Page};
//!
//! let config = MonitorConfig::new("127.0.0.1:0".parse()?, "--monitor");
//! let monitor = Monitor::start(config, |path: &str, _query: &muster_monitor::Query| {
//!     (path == "/healthz").then(|| Page::text("ok\n"))
//! })
//! .await?;
//! println!("serving on http://{}", monitor.local_addr());
//! monitor.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

pub use prometheus_client;

/// The content type Prometheus scrapers accept for `prometheus-client`'s text.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How the monitoring server listens and what it tolerates.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Where `listen` came from (a flag such as `--monitor`, or a config key),
    /// so a startup error tells the operator what to change.
    pub setting: String,
    /// Most connections served at once; past it a new one gets `503`.
    pub max_connections: usize,
    /// How long a client has to send a whole request head (and how long an
    /// idle keep-alive connection is kept waiting for the next one).
    pub header_read_timeout: Duration,
    /// Largest request head accepted, in bytes (at least 8 192, hyper's minimum).
    pub max_header_bytes: usize,
}

impl MonitorConfig {
    /// Defaults suited to a scraper or two: 64 connections, 10 s for a
    /// request head, 16 KiB of headers.
    pub fn new(listen: SocketAddr, setting: impl Into<String>) -> MonitorConfig {
        MonitorConfig {
            listen,
            setting: setting.into(),
            max_connections: 64,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
        }
    }
}

/// Why the monitoring server could not start.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The address could not be bound (in use, not local, no permission).
    #[error("cannot serve monitoring on {addr} ({setting})")]
    Bind {
        /// The setting the address came from.
        setting: String,
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

/// The parsed query string of a request (`?offset=2&limit=10`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses `application/x-www-form-urlencoded` text (without the `?`).
    pub fn parse(query: &str) -> Query {
        Query(
            form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value given for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One page to serve: a content type and a body, built per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The `Content-Type` header.
    pub content_type: String,
    /// The body.
    pub body: Bytes,
    /// The status: 200 unless the page itself says the request was bad.
    pub status: u16,
}

impl Page {
    /// A JSON document (already encoded).
    pub fn json(body: impl Into<Bytes>) -> Page {
        Page {
            content_type: "application/json".to_string(),
            body: body.into(),
            status: 200,
        }
    }

    /// Plain text.
    pub fn text(body: impl Into<Bytes>) -> Page {
        Page {
            content_type: "text/plain; charset=utf-8".to_string(),
            body: body.into(),
            status: 200,
        }
    }

    /// A `400 Bad Request` saying what was wrong with the query.
    pub fn bad_request(message: impl Into<String>) -> Page {
        let mut message = message.into();
        message.push('\n');
        Page {
            status: 400,
            ..Page::text(message)
        }
    }

    /// The registry's metrics in the OpenMetrics text format Prometheus scrapes.
    pub fn prometheus(registry: &prometheus_client::registry::Registry) -> Page {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
            // Only a broken metric implementation gets here; say so rather than serve half.
            tracing::error!(error = %e, "cannot encode metrics");
            return Page {
                status: 500,
                ..Page::text("cannot encode metrics\n")
            };
        }
        Page {
            content_type: OPENMETRICS_TEXT.to_string(),
            body: text.into(),
            status: 200,
        }
    }
}

/// What the server serves: a page for a path and query, or `None` for 404.
/// It runs on the connection's task for every request: build the page from a
/// snapshot, quickly, without blocking I/O.
pub trait Pages: Send + Sync + 'static {
    /// The page at `path` (e.g. `/varz`), or `None` if there is none.
    fn page(&self, path: &str, query: &Query) -> Option<Page>;
}

impl<F> Pages for F
where
    F: Fn(&str, &Query) -> Option<Page> + Send + Sync + 'static,
{
    fn page(&self, path: &str, query: &Query) -> Option<Page> {
        self(path, query)
    }
}

/// The monitoring server. Start one with [`Monitor::start`].
#[derive(Debug)]
pub struct Monitor;

impl Monitor {
    /// Binds `config.listen` and serves `pages` in background tokio tasks.
    /// Returns once the socket is listening.
    pub async fn start(
        config: MonitorConfig,
        pages: impl Pages,
    ) -> Result<MonitorHandle, MonitorError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| MonitorError::Bind {
                    setting: config.setting.clone(),
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| MonitorError::Bind {
            setting: config.setting.clone(),
            addr: config.listen,
            source,
        })?;
        let (stop, stopped) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, config, Arc::new(pages), stopped));
        tracing::info!(%local_addr, "monitoring listening");
        Ok(MonitorHandle {
            local_addr,
            stop,
            accept: Some(accept),
        })
    }
}

/// A running monitoring server. Dropping it stops it too;
/// [`shutdown`](Self::shutdown) also waits for open connections to close.
#[derive(Debug)]
pub struct MonitorHandle {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
}

impl MonitorHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes every connection, and returns when done.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
    }
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

async fn raised(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

async fn accept_loop(
    listener: TcpListener,
    config: MonitorConfig,
    pages: Arc<dyn Pages>,
    mut stopped: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let mut connections = JoinSet::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_bytes.max(8192))
        .keep_alive(true);
    loop {
        tokio::select! {
            biased;
            _ = raised(&mut stopped) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!(%err, "monitoring accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::debug!(%peer, "monitoring connection refused: too many open");
                    connections.spawn(refuse(stream));
                    continue;
                };
                let pages = pages.clone();
                let service = hyper::service::service_fn(move |req| {
                    let pages = pages.clone();
                    async move { Ok::<_, Infallible>(answer(&*pages, req)) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                let mut stop = stopped.clone();
                let header_read_timeout = config.header_read_timeout;
                connections.spawn(async move {
                    let _slot = slot;
                    tokio::pin!(conn);
                    tokio::select! {
                        served = conn.as_mut() => {
                            if let Err(err) = served {
                                tracing::debug!(%peer, %err, "monitoring connection ended");
                            }
                        }
                        _ = raised(&mut stop) => {
                            conn.as_mut().graceful_shutdown();
                            let _ = tokio::time::timeout(header_read_timeout, conn).await;
                        }
                    }
                });
            }
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// Answers a connection past the cap with `503` and closes it, bounded in time.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    const BUSY: &[u8] =
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        stream.write_all(BUSY).await?;
        stream.shutdown().await
    })
    .await;
}

type Body = http_body_util::Either<Full<Bytes>, Empty<Bytes>>;

fn answer(pages: &dyn Pages, req: Request<Incoming>) -> Response<Body> {
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        let mut response = status(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let query = Query::parse(req.uri().query().unwrap_or(""));
    let Some(page) = pages.page(req.uri().path(), &query) else {
        return status(StatusCode::NOT_FOUND, "not found\n");
    };
    let code = StatusCode::from_u16(page.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let length = page.body.len();
    let body = if head {
        Body::Right(Empty::new())
    } else {
        Body::Left(Full::new(page.body))
    };
    let mut response = Response::new(body);
    *response.status_mut() = code;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&page.content_type) {
        headers.insert(CONTENT_TYPE, value);
    }
    headers.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}

fn status(code: StatusCode, message: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::Left(Full::new(Bytes::from_static(
        message.as_bytes(),
    ))));
    *response.status_mut() = code;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs() {
        let q = Query::parse("offset=2&limit=10&subs=1&name=a%20b");
        assert_eq!(q.get("offset"), Some("2"));
        assert_eq!(q.get("subs"), Some("1"));
        assert_eq!(q.get("name"), Some("a b"));
        assert_eq!(q.get("missing"), None);
        assert_eq!(Query::parse(""), Query::default());
    }
}
