//! NATS credentials beyond certificates, against a real nats-server that
//! demands them: sent when configured, refused when wrong, never printed.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use muster_connector::{connect_client, Auth, Transport};

/// A nats-server on a free loopback port with `args`, killed when dropped.
struct NatsServer(Child, u16);

impl NatsServer {
    fn start(args: &[&str]) -> Option<NatsServer> {
        let found = Command::new("nats-server")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            assert!(
                std::env::var_os("CI").is_none(),
                "nats-server is not installed; .ci/run installs it"
            );
            eprintln!("skipped: nats-server is not installed");
            return None;
        }
        // A free port can be taken by a parallel test between our look and
        // nats-server's bind: then it exits, and we try another.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port");
            let mut child = Command::new("nats-server")
                .args(["-a", "127.0.0.1", "-p", &port.to_string()])
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server starts");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    // Ours, still running after answering?
                    std::thread::sleep(Duration::from_millis(50));
                    if let Ok(None) = child.try_wait() {
                        return Some(NatsServer(child, port));
                    }
                    break;
                }
                assert!(Instant::now() < deadline, "nats-server did not listen");
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("nats-server did not start on any of 5 ports");
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.1)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn connect(urls: &[String], auth: Auth) -> Result<async_nats::Client, String> {
    let transport = Transport { tls: None, auth };
    connect_client(urls, "credentials test", Duration::from_secs(3), &transport)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn user_and_password_from_the_config_or_the_url() {
    let Some(server) = NatsServer::start(&["--user", "ops", "--pass", "hunter2"]) else {
        return;
    };
    let url = server.url();
    let good = Auth::UserPassword {
        user: "ops".into(),
        password: "hunter2".into(),
    };
    let client = connect(std::slice::from_ref(&url), good).await.unwrap();
    client.flush().await.unwrap();
    // In the URL, as operators write it: async-nats alone would not send it.
    let with_secret = url.replace("nats://", "nats://ops:hunter2@");
    let client = connect(std::slice::from_ref(&with_secret), Auth::None)
        .await
        .unwrap();
    client.flush().await.unwrap();
    // Wrong or missing: refused, and the password is in no message.
    let wrong_url = url.replace("nats://", "nats://ops:wrong-secret@");
    let err = connect(std::slice::from_ref(&wrong_url), Auth::None)
        .await
        .unwrap_err();
    assert!(!err.contains("wrong-secret"), "{err}");
    assert!(err.contains("ops:***@"), "{err}");
    let err = connect(std::slice::from_ref(&url), Auth::None)
        .await
        .unwrap_err();
    assert!(err.contains("authorization"), "{err}");
}

#[tokio::test]
async fn a_token() {
    let Some(server) = NatsServer::start(&["--auth", "s3cret-token"]) else {
        return;
    };
    let url = server.url();
    let client = connect(
        std::slice::from_ref(&url),
        Auth::Token("s3cret-token".into()),
    )
    .await
    .unwrap();
    client.flush().await.unwrap();
    let err = connect(std::slice::from_ref(&url), Auth::Token("guess".into()))
        .await
        .unwrap_err();
    assert!(!err.contains("guess") && !err.contains("s3cret"), "{err}");
}

#[test]
fn credentials_come_from_the_config_one_kind_at_a_time() {
    use muster_protocol::config::Config;
    let parse = |text: &str| Auth::from_config(&Config::parse(text).unwrap(), None);
    assert_eq!(parse("").unwrap(), Auth::None);
    assert_eq!(
        parse("plugin.nats.token = t").unwrap(),
        Auth::Token("t".into())
    );
    assert_eq!(
        parse("plugin.nats.credentials = /etc/muster/nats.creds").unwrap(),
        Auth::CredsFile("/etc/muster/nats.creds".into())
    );
    let err = parse("plugin.nats.user = ops").unwrap_err();
    assert!(
        err.to_string().contains("needs plugin.nats.password"),
        "{err}"
    );
    let err = parse("plugin.nats.token = t\nplugin.nats.nkey = SU").unwrap_err();
    assert!(err.to_string().contains("only one of"), "{err}");
    assert_eq!(err.line, Some(2));
}
