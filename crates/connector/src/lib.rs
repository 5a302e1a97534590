//! muster's connection to the broker.
//!
//! All muster traffic goes through the `async-nats` client, so the same
//! code talks to the embedded `mco broker` and to a nats-server cluster.
//! This crate holds the few decisions about *how* to connect: always over
//! TLS with the participant's certificate when a [`Transport`] has one,
//! with NATS credentials when a deployment needs them (never logged),
//! daemons retry forever and say so in the log, clients give up after a
//! timeout and name the URLs they tried (with any password removed).
//! Servers are tried in the configured order, first one first: with a
//! nats-server cluster, list the nearest member first and the others after
//! it, and a participant moves to the next when its member goes away.
//!
//! ```no_run
//! # async fn run() -> Result<(), muster_connector::ConnectError> {
//! use std::time::Duration;
//! use muster_connector::Transport;
//! let servers = vec!["tls://127.0.0.1:4222".to_string()];
//! let client = muster_connector::connect_client(&servers, "mco ping", Duration::from_secs(2), &Transport::default()).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event, ServerAddr};

/// The broker URL used when a config names none.
pub const DEFAULT_SERVER: &str = "tls://127.0.0.1:4222";

/// Why a connection could not be made. Every variant names the broker
/// URL(s) or file at fault, with any password replaced by `***`.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A URL that does not parse (shown without its password).
    #[error("invalid broker URL {url:?}: {source}")]
    Url {
        /// The URL, redacted.
        url: String,
        /// Why it does not parse.
        source: std::io::Error,
    },
    /// No URL at all.
    #[error("no broker URL configured")]
    NoServers,
    /// A NATS credentials file that cannot be used.
    #[error("{}: {source}", path.display())]
    Credentials {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Nothing answered, or the broker refused us.
    #[error("cannot reach the broker at {urls} within {timeout:?}: {reason}")]
    Unreachable {
        /// The URLs tried, redacted.
        urls: String,
        /// How long we tried.
        timeout: Duration,
        /// What async-nats said, with a hint when it is about TLS.
        reason: String,
        /// async-nats's error; `None` when our own deadline ran out first.
        #[source]
        source: Option<async_nats::ConnectError>,
    },
}

/// NATS-level credentials some deployments need besides certificates.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// None (the default: the certificate is the identity).
    #[default]
    None,
    /// `plugin.nats.user` / `plugin.nats.password`, or `user:pass@` in a URL.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// `plugin.nats.token`.
    Token(String),
    /// `plugin.nats.credentials`: a `.creds` file (JWT and nkey seed).
    CredsFile(PathBuf),
    /// `plugin.nats.nkey`: an nkey seed.
    NKey(String),
}

impl Auth {
    /// Reads `plugin.nats.user` + `plugin.nats.password`, `plugin.nats.token`,
    /// `plugin.nats.credentials` (relative to `base`) or `plugin.nats.nkey`; at most one kind.
    pub fn from_config(
        config: &muster_protocol::config::Config,
        base: Option<&std::path::Path>,
    ) -> Result<Auth, muster_protocol::config::ConfigError> {
        let mut found = Vec::new();
        if let Some(user) = config.get("plugin.nats.user") {
            let password = config.get("plugin.nats.password").ok_or_else(|| {
                config.error(
                    "plugin.nats.user",
                    "plugin.nats.user needs plugin.nats.password too",
                )
            })?;
            found.push((
                "plugin.nats.user",
                Auth::UserPassword {
                    user: user.into(),
                    password: password.into(),
                },
            ));
        } else if config.get("plugin.nats.password").is_some() {
            return Err(config.error(
                "plugin.nats.password",
                "plugin.nats.password needs plugin.nats.user too",
            ));
        }
        if let Some(token) = config.get("plugin.nats.token") {
            found.push(("plugin.nats.token", Auth::Token(token.into())));
        }
        if let Some(path) = config.get("plugin.nats.credentials") {
            let path = match base {
                Some(base) if std::path::Path::new(path).is_relative() => base.join(path),
                _ => PathBuf::from(path),
            };
            found.push(("plugin.nats.credentials", Auth::CredsFile(path)));
        }
        if let Some(seed) = config.get("plugin.nats.nkey") {
            found.push(("plugin.nats.nkey", Auth::NKey(seed.into())));
        }
        match found.len() {
            0 => Ok(Auth::None),
            1 => Ok(found.remove(0).1),
            _ => Err(config.error(
                found[1].0,
                format!(
                    "set only one of {}",
                    found.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }
}

impl fmt::Debug for Auth {
    // Secrets never reach a log line, not even at debug.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::UserPassword { user, .. } => write!(f, "UserPassword({user}, <redacted>)"),
            Auth::Token(_) => f.write_str("Token(<redacted>)"),
            Auth::CredsFile(path) => write!(f, "CredsFile({})", path.display()),
            Auth::NKey(_) => f.write_str("NKey(<redacted>)"),
        }
    }
}

/// How a connection proves who it is and whom it trusts.
#[derive(Clone, Default)]
pub struct Transport {
    /// TLS with this client config (our certificate, the CA); `None`
    /// connects in plain text, which only a test broker accepts.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// NATS credentials on top.
    pub auth: Auth,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth)
            .finish()
    }
}

/// `url` with any password replaced by `***`, for logs and errors.
///
/// ```
/// assert_eq!(muster_connector::redact("tls://ops:hunter2@broker1:4222"), "tls://ops:***@broker1:4222");
/// assert_eq!(muster_connector::redact("tls://broker1:4222"), "tls://broker1:4222");
/// ```
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                format!("{scheme}://***@{host}")
            }
        }
        None => url.to_string(),
    }
}

fn redact_all(urls: &[String]) -> String {
    urls.iter().map(|u| redact(u)).collect::<Vec<_>>().join(",")
}

/// Parses `tls://host:port` or `nats://host:port` URLs (a bare
/// `host:port` is accepted too).
pub fn parse_servers(urls: &[String]) -> Result<Vec<ServerAddr>, ConnectError> {
    if urls.is_empty() {
        return Err(ConnectError::NoServers);
    }
    urls.iter()
        .map(|url| {
            ServerAddr::from_str(url.trim()).map_err(|source| ConnectError::Url {
                url: redact(url),
                source,
            })
        })
        .collect()
}

/// Whether the `n`th failed attempt in a row is worth a warning: the
/// first few and then ever more rarely, so a daemon waiting for a broker
/// that is down for a day says so without flooding the log.
fn worth_warning(n: u64) -> bool {
    n.is_power_of_two()
}

async fn options(
    name: &str,
    urls: &[String],
    servers: &[ServerAddr],
    transport: &Transport,
) -> Result<ConnectOptions, ConnectError> {
    let name = name.to_string();
    let for_events = name.clone();
    let broker = Arc::new(redact_all(urls));
    let failures = Arc::new(AtomicU64::new(0));
    // Set once we drain: a broker that goes away after that (a demo or a
    // test shutting both down) is the end we asked for, not a loss.
    let draining = Arc::new(AtomicBool::new(false));
    let mut options = ConnectOptions::new()
        .name(name)
        // Replies to a broadcast can outnumber the default buffer on big fleets.
        .subscription_capacity(1 << 18)
        // The configured order is the operator's preference (a site's own
        // cluster member first, the others for when it is gone), as in
        // MCollective and Choria; async-nats would shuffle it.
        .retain_servers_order()
        .event_callback(move |event| {
            let name = for_events.clone();
            let broker = broker.clone();
            let failures = failures.clone();
            let draining = draining.clone();
            async move {
                match event {
                    Event::Draining => {
                        draining.store(true, Ordering::Relaxed);
                        tracing::debug!(client = %name, %broker, "draining")
                    }
                    // Whatever happens to a connection we are closing.
                    other if draining.load(Ordering::Relaxed) => {
                        tracing::debug!(client = %name, %broker, event = %other, "broker event while draining")
                    }
                    Event::Connected => {
                        failures.store(0, Ordering::Relaxed);
                        tracing::info!(client = %name, %broker, "connected to the broker")
                    }
                    Event::Disconnected => {
                        tracing::warn!(client = %name, %broker, "lost the broker; reconnecting")
                    }
                    Event::SlowConsumer(sid) => {
                        tracing::warn!(client = %name, sid, "subscription is falling behind; messages dropped")
                    }
                    // Permission violations and authorization errors: the
                    // broker refused something this participant asked for.
                    Event::ServerError(error) => {
                        tracing::warn!(client = %name, %broker, %error, "the broker refused a request of ours")
                    }
                    // A failed (re)connect attempt; async-nats keeps trying.
                    Event::ClientError(error) => {
                        let attempts = failures.fetch_add(1, Ordering::Relaxed) + 1;
                        let reason = explain(&error.to_string());
                        if worth_warning(attempts) {
                            tracing::warn!(client = %name, %broker, attempts, %reason, "cannot reach the broker; retrying");
                        } else {
                            tracing::debug!(client = %name, %broker, attempts, %reason, "cannot reach the broker; retrying");
                        }
                    }
                    other => tracing::debug!(client = %name, %broker, event = %other, "broker event"),
                }
            }
        });
    if let Some(tls) = &transport.tls {
        options = options
            .tls_client_config(tls.as_ref().clone())
            .require_tls(true);
    }
    // async-nats does not send `user:pass@` from a URL by itself.
    let from_url = servers
        .iter()
        .find_map(|s| Some((s.username()?.to_string(), s.password()?.to_string())));
    options = match (&transport.auth, from_url) {
        (Auth::UserPassword { user, password }, _) => {
            options.user_and_password(user.clone(), password.clone())
        }
        (Auth::Token(token), _) => options.token(token.clone()),
        (Auth::NKey(seed), _) => options.nkey(seed.clone()),
        (Auth::CredsFile(path), _) => {
            options
                .credentials_file(path)
                .await
                .map_err(|source| ConnectError::Credentials {
                    path: path.clone(),
                    source,
                })?
        }
        (Auth::None, Some((user, password))) => options.user_and_password(user, password),
        (Auth::None, None) => options,
    };
    Ok(options)
}

/// The addresses with any `user:password@` removed. [`options`] has taken
/// the credentials from them already, and async-nats logs the addresses it
/// tries (at debug, password and all).
fn without_credentials(servers: Vec<ServerAddr>) -> Vec<ServerAddr> {
    servers
        .into_iter()
        .map(|server| {
            if !server.has_user_pass() {
                return server;
            }
            let mut url = server.clone().into_inner();
            let stripped = url.set_password(None).is_ok() && url.set_username("").is_ok();
            match ServerAddr::from_url(url) {
                Ok(bare) if stripped => bare,
                _ => server,
            }
        })
        .collect()
}

/// Connects a long-running daemon: it keeps retrying until the broker is
/// there, and reconnects for ever when it goes away. Returns at once.
pub async fn connect_daemon(
    urls: &[String],
    name: &str,
    transport: &Transport,
) -> Result<Client, ConnectError> {
    let servers = parse_servers(urls)?;
    tracing::info!(broker = %redact_all(urls), tls = transport.tls.is_some(), "connecting to the broker (retrying until it answers)");
    options(name, urls, &servers, transport)
        .await?
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connect(without_credentials(servers))
        .await
        .map_err(|e| ConnectError::Unreachable {
            urls: redact_all(urls),
            timeout: Duration::ZERO,
            reason: explain(&e.to_string()),
            source: Some(e),
        })
}

/// Connects a short-lived client, failing after `timeout`.
pub async fn connect_client(
    urls: &[String],
    name: &str,
    timeout: Duration,
    transport: &Transport,
) -> Result<Client, ConnectError> {
    let servers = parse_servers(urls)?;
    let unreachable = |reason: String, source| {
        let error = ConnectError::Unreachable {
            urls: redact_all(urls),
            timeout,
            reason: explain(&reason),
            source,
        };
        tracing::debug!(%error, "giving up on the broker");
        error
    };
    tracing::debug!(broker = %redact_all(urls), tls = transport.tls.is_some(), ?timeout, "connecting to the broker");
    let connect = options(name, urls, &servers, transport)
        .await?
        .connection_timeout(timeout)
        .connect(without_credentials(servers));
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(unreachable(e.to_string(), Some(e))),
        Err(_) => Err(unreachable("timed out".into(), None)),
    }
}

/// The TLS root variables as muster was started with them, once
/// [`skip_system_roots`] has replaced them.
static STARTED_WITH: std::sync::OnceLock<Vec<(&'static str, Option<std::ffi::OsString>)>> =
    std::sync::OnceLock::new();

/// The variables rustls-native-certs reads.
const ROOT_VARIABLES: [&str; 2] = ["SSL_CERT_FILE", "SSL_CERT_DIR"];

/// async-nats reads the system's root certificates (hundreds of PEM files,
/// a few milliseconds) on every TLS connect, even though muster hands it a
/// complete TLS config trusting only muster's CA, and it refuses to connect
/// when one of those files is unreadable. This points `SSL_CERT_FILE` at
/// `/dev/null` and removes `SSL_CERT_DIR` for this process, so nothing is
/// read. Call it before any thread starts; programs muster starts get the
/// variables back as they were ([`for_children`]).
pub fn skip_system_roots() {
    let started_with = ROOT_VARIABLES
        .iter()
        .map(|name| (*name, std::env::var_os(name)))
        .collect();
    if STARTED_WITH.set(started_with).is_ok() {
        std::env::set_var("SSL_CERT_FILE", "/dev/null");
        std::env::remove_var("SSL_CERT_DIR");
    }
}

/// What a program muster starts must have set (`Some`) or removed
/// (`None`) to see the environment muster was started with (see
/// [`skip_system_roots`]); empty when nothing was changed.
pub fn for_children() -> &'static [(&'static str, Option<std::ffi::OsString>)] {
    STARTED_WITH.get().map_or(&[], Vec::as_slice)
}

/// Drains `client` (its subscriptions end, what it published is flushed,
/// then it closes) and returns once its connection has taken the drain in
/// hand, so a broker that goes away afterwards is not logged as lost.
/// async-nats's own `drain` returns before that.
pub async fn close(client: &Client) {
    if client.drain().await.is_ok() {
        // Commands are handled in order: once this flush is answered (or
        // fails because the connection closed), the drain has begun.
        let _ = tokio::time::timeout(Duration::from_secs(5), client.flush()).await;
    }
}

/// Adds what to do to async-nats's TLS and authorization messages.
fn explain(reason: &str) -> String {
    let lower = reason.to_ascii_lowercase();
    let hint = if lower.contains("invalidcontenttype") || lower.contains("corrupt message") {
        "; the broker does not answer in TLS there (a plain-text broker, or the wrong port?)"
    } else if lower.contains("unknownissuer") || lower.contains("unknown issuer") {
        "; the broker's certificate is not from our CA (plugin.security.ssldir certs/ca.pem)"
    } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        "; the broker's certificate does not name the host in the URL (issue it with --san HOST)"
    } else if lower.contains("certificate")
        || lower.contains("alert")
        || lower.contains("handshake")
    {
        "; the broker refused our certificate or we refused its one (expired, revoked, or from another CA?)"
    } else if lower.contains("authorization") {
        "; the broker does not admit this identity"
    } else {
        ""
    };
    format!("{reason}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(matches!(parse_servers(&[]), Err(ConnectError::NoServers)));
        assert!(parse_servers(&["nats://127.0.0.1:4222".into(), "127.0.0.1:4223".into()]).is_ok());
        let err = parse_servers(&["http://[::1".into()]).unwrap_err();
        assert!(err.to_string().contains("http://[::1"), "{err}");
        let err = parse_servers(&["nats://u:hunter2@[::1".into()]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_named_in_the_error() {
        // Bind then drop a listener to get a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("nats://127.0.0.1:{port}");
        let err = connect_client(
            std::slice::from_ref(&url),
            "test",
            Duration::from_millis(500),
            &Transport::default(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains(&url), "{err}");
        let secret = format!("nats://ops:hunter2@127.0.0.1:{port}");
        let err = connect_client(
            &[secret],
            "test",
            Duration::from_millis(300),
            &Transport::default(),
        )
        .await
        .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn secrets_are_not_in_debug_output() {
        let auth = Auth::UserPassword {
            user: "ops".into(),
            password: "hunter2".into(),
        };
        let text = format!(
            "{:?} {:?} {:?}",
            auth,
            Auth::Token("s3cret".into()),
            Auth::NKey("SUAB".into())
        );
        assert!(
            !text.contains("hunter2") && !text.contains("s3cret") && !text.contains("SUAB"),
            "{text}"
        );
    }
}
