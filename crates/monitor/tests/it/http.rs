//! The monitoring server over real loopback sockets: methods, paths,
//! bounds (header size, header deadline, connection cap) and startup errors.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use muster_monitor::{Monitor, MonitorConfig, MonitorError, MonitorHandle, Page, Query};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(20);

async fn start(config: MonitorConfig) -> MonitorHandle {
    Monitor::start(config, |path: &str, query: &Query| match path {
        "/hello" => Some(Page::text(format!(
            "hello {}\n",
            query.get("name").unwrap_or("world")
        ))),
        "/json" => Some(Page::json("{\"ok\":true}")),
        _ => None,
    })
    .await
    .expect("monitor starts")
}

fn config() -> MonitorConfig {
    MonitorConfig::new("127.0.0.1:0".parse().unwrap(), "--monitor")
}

/// Sends raw bytes and reads until the server closes (or LIMIT).
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(LIMIT, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn get(addr: SocketAddr, path: &str) -> String {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

#[tokio::test]
async fn serves_pages_404_and_405() {
    let monitor = start(config()).await;
    let addr = monitor.local_addr();

    let hello = get(addr, "/hello?name=muster").await;
    assert!(hello.starts_with("HTTP/1.1 200 OK\r\n"), "{hello}");
    assert!(hello.contains("content-type: text/plain"), "{hello}");
    assert!(hello.ends_with("hello muster\n"), "{hello}");

    let json = get(addr, "/json").await;
    assert!(json.contains("content-type: application/json"), "{json}");
    assert!(json.ends_with("{\"ok\":true}"), "{json}");

    let head = exchange(
        addr,
        b"HEAD /hello HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("content-length: 12\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");

    let missing = get(addr, "/nothing").await;
    assert!(
        missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{missing}"
    );

    for method in ["POST", "PUT", "DELETE"] {
        let refused = exchange(
            addr,
            format!("{method} /hello HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(
            refused.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{refused}"
        );
        assert!(refused.contains("allow: GET, HEAD\r\n"), "{refused}");
    }
    monitor.shutdown().await;
}

#[tokio::test]
async fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut config = config();
    config.listen = addr;
    config.setting = "plugin.prometheus.listen".to_string();
    let err = Monitor::start(config, |_: &str, _: &Query| None)
        .await
        .expect_err("the port is taken");
    assert!(matches!(err, MonitorError::Bind { .. }), "{err:?}");
    let text = format!(
        "{err}: {}",
        std::error::Error::source(&err).expect("a source")
    );
    assert!(text.contains(&addr.to_string()), "{text}");
    assert!(text.contains("plugin.prometheus.listen"), "{text}");
    assert!(text.to_lowercase().contains("in use"), "{text}");
}

#[tokio::test]
async fn garbage_and_huge_headers_are_refused_and_serving_goes_on() {
    let monitor = start(config()).await;
    let addr = monitor.local_addr();

    let garbage = exchange(addr, b"\x00\x16\x03\x01 not http at all\r\n\r\n").await;
    assert!(
        garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"),
        "{garbage:?}"
    );

    let mut huge = b"GET /hello HTTP/1.1\r\nhost: x\r\nx-big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 256 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    let answer = exchange(addr, &huge).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "a 256 KiB header is refused: {answer:?}"
    );

    assert!(get(addr, "/hello").await.starts_with("HTTP/1.1 200"));
    monitor.shutdown().await;
}

#[tokio::test]
async fn idle_connections_are_capped_and_timed_out() {
    let mut config = config();
    config.max_connections = 8;
    config.header_read_timeout = Duration::from_secs(1);
    let monitor = start(config).await;
    let addr = monitor.local_addr();

    // More silent connections than the cap: they hold every place...
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // ...the ones past the cap are told at once...
    let busy = exchange(addr, b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(
        busy.is_empty() || busy.starts_with("HTTP/1.1 503") || busy.starts_with("HTTP/1.1 200"),
        "{busy}"
    );
    // ...and once the header deadline drops the silent ones, pages are served again.
    let deadline = Instant::now() + LIMIT;
    loop {
        let answer = get(addr, "/hello").await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "never served again: {answer:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The silent connections were closed by the server.
    for mut stream in idle.drain(..8) {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(LIMIT, stream.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(_)) | Ok(Err(_))),
            "an idle connection is still open"
        );
    }
    monitor.shutdown().await;
}
