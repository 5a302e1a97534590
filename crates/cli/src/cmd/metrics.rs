//! `mco server`'s Prometheus `/metrics` on `plugin.prometheus.listen`.

use std::net::SocketAddr;

use anyhow::Context;
use muster_monitor::{Monitor, MonitorConfig, MonitorHandle, Page, Query};

/// The config key the address comes from, named in errors.
const KEY: &str = "plugin.prometheus.listen";

/// Serves the process's metrics on `listen` (`host:port`) until the handle drops.
pub(crate) async fn serve(listen: &str) -> anyhow::Result<MonitorHandle> {
    let addr: SocketAddr = listen.parse().with_context(|| {
        format!("{KEY} = {listen}: not an address as host:port (e.g. 127.0.0.1:9100)")
    })?;
    let pages = |path: &str, _: &Query| {
        (path == "/metrics").then(|| Page::prometheus(&muster_server::stats::metrics().registry()))
    };
    let monitor = Monitor::start(MonitorConfig::new(addr, KEY), pages).await?;
    tracing::info!(addr = %monitor.local_addr(), "serving Prometheus metrics on /metrics");
    Ok(monitor)
}
