//! `mco server --check-config FILE` and `mco check-config`: read a config
//! as the daemon or the client would, check what it points at, and print
//! the effective settings — without connecting or starting anything.
//!
//! Exit 0 when the file is usable (warnings are printed), 2 with every
//! error listed when it is not. Secrets and URL passwords are never printed.

use std::path::Path;

use muster_client::ClientConfig;
use muster_protocol::config::{redact_url, Config, ConfigError, ConfigErrors, ConfigFile};
use muster_server::ServerConfig;

use super::{EXIT_ERROR, EXIT_OK};

/// Checks a server.cfg.
pub(crate) fn server(path: &Path) -> anyhow::Result<u8> {
    let config = match ServerConfig::check(path) {
        Ok(config) => config,
        Err(errors) => {
            return Ok(failed(
                &path.display().to_string(),
                &errors,
                &errors.warnings,
            ))
        }
    };
    let computed = [
        ("identity", config.identity.clone()),
        ("collectives", config.collectives.join(", ")),
        (
            "plugin.security.ssldir",
            config.security.ssldir.root().display().to_string(),
        ),
        ("plugin.security.certname", config.security.certname.clone()),
        ("plugin.nats.servers", brokers(&config.servers)),
    ];
    let summary = config.summary(&[]);
    Ok(finish(
        &path.display().to_string(),
        &config.settings,
        ConfigFile::Server,
        &config.warnings,
        &computed,
        &summary,
    ))
}

/// Checks the client.cfg `mco` would read (`--config`, `$MCO_CONFIG` or the default).
pub(crate) fn client(explicit: Option<&Path>) -> anyhow::Result<u8> {
    let name = match ClientConfig::path(explicit) {
        Some(path) => path.display().to_string(),
        None => "(no client.cfg: defaults)".to_string(),
    };
    let config = match ClientConfig::check(explicit) {
        Ok(config) => config,
        Err(errors) => return Ok(failed(&name, &errors, &errors.warnings)),
    };
    let computed = [
        ("collectives", config.collectives.join(", ")),
        (
            "plugin.security.ssldir",
            config.security.ssldir.root().display().to_string(),
        ),
        ("plugin.security.certname", config.security.certname.clone()),
        ("plugin.nats.servers", brokers(&config.servers)),
    ];
    let summary = format!(
        "caller {} brokers {} collectives {}",
        config.security.certname,
        brokers(&config.servers),
        config.collectives.join(",")
    );
    Ok(finish(
        &name,
        &config.settings,
        ConfigFile::Client,
        &config.warnings,
        &computed,
        &summary,
    ))
}

fn brokers(servers: &[String]) -> String {
    servers
        .iter()
        .map(|s| redact_url(s))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints every error (and warning) and returns the exit code for them.
fn failed(name: &str, errors: &ConfigErrors, warnings: &[ConfigError]) -> u8 {
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    for error in &errors.errors {
        eprintln!("error: {error}");
    }
    let n = errors.errors.len();
    eprintln!(
        "{name}: {n} error{}; nothing was started",
        if n == 1 { "" } else { "s" }
    );
    EXIT_ERROR
}

fn finish(
    name: &str,
    settings: &Config,
    file: ConfigFile,
    warnings: &[ConfigError],
    computed: &[(&str, String)],
    summary: &str,
) -> u8 {
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    println!(
        "{name}: OK ({} warning{})",
        warnings.len(),
        if warnings.len() == 1 { "" } else { "s" }
    );
    println!("{summary}");
    println!();
    let rows = settings.effective(file);
    let width = rows.iter().map(|r| r.key.name.len()).max().unwrap_or(0);
    for row in rows {
        let (value, origin) = match (row.line, computed.iter().find(|(k, _)| *k == row.key.name)) {
            (Some(line), Some((_, value))) => (value.clone(), format!("line {line}")),
            (Some(line), None) => (row.value, format!("line {line}")),
            (None, Some((_, value))) => (value.clone(), "default".to_string()),
            (None, None) if row.value.is_empty() => ("(unset)".to_string(), "default".to_string()),
            (None, None) => (row.value, "default".to_string()),
        };
        println!("{:width$} = {value}    # {origin}", row.key.name);
    }
    EXIT_OK
}
