//! `mco`: muster's one binary — client applications, node daemon and
//! embedded broker. This file only parses arguments and dispatches; the
//! work lives in the library crates and in `cmd/`.
// Doc comments here are clap's help texts, where `[NAME]` means an
// optional argument, not a link.
#![allow(rustdoc::broken_intra_doc_links)]

mod args;
mod batching;
mod cmd;
mod render;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "mco",
    version,
    about = "muster: fleet orchestration in the tradition of MCollective",
    disable_help_subcommand = true,
    after_help = "Any executable mco-NAME on PATH runs as `mco NAME`; `mco help` lists those too.\n\
                  `mco help APP` or `mco APP --help` shows an application's usage and examples.\n\
                  Every client.cfg and server.cfg key, with its default and an example: docs/configuration.md;\n\
                  `mco check-config` and `mco server --check-config FILE` check a file."
)]
struct Cli {
    /// Client config file for every application (exported to custom ones as MCO_CONFIG)
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ping every matching node and show its round-trip time
    #[command(after_help = "Examples:
  mco ping
  mco ping -F os.family=Debian -C httpd
  mco ping --nodes nodes.txt          # ping exactly these; the silent ones are listed")]
    Ping(cmd::ping::Args),
    /// Run an agent's action on matching nodes: mco rpc AGENT ACTION [key=value ...]
    #[command(after_help = "Examples:
  mco rpc rpcutil ping
  mco rpc rpcutil get_fact fact=os.family -I web01
  mco rpc package status package=openssl -C httpd --json
  mco plugin doc package             # an agent's actions, inputs and outputs")]
    Rpc(cmd::rpc::Args),
    /// List the identities of matching nodes, one per line
    #[command(after_help = "Examples:
  mco find
  mco find -F role=db -T compute
  mco find -S \"httpd and not os.family=RedHat\" | wc -l")]
    Find(cmd::find::Args),
    /// Show how a fact's values are spread over matching nodes: mco facts FACT
    #[command(after_help = "Examples:
  mco facts os.family
  mco facts memorysize_mb -C httpd")]
    Facts(cmd::facts::Args),
    /// Show everything a node knows about itself: mco inventory NODE (--json: node records)
    #[command(after_help = "Examples:
  mco inventory node07
  mco inventory --json > inventory.json     # records for --dm inventory
  mco find --inventory inventory.json -C redis")]
    Inventory(cmd::inventory::Args),
    /// Query and manage packages: mco package PACKAGE ACTION
    #[command(after_help = "Examples:
  mco package openssl status
  mco package install nginx -C role::web
  mco package nginx install --pkg-version 1.24.0-1 -I web01")]
    Package(cmd::package::Args),
    /// Query and control services: mco service SERVICE ACTION
    #[command(after_help = "Examples:
  mco service nginx status
  mco service restart nginx -C role::web")]
    Service(cmd::service::Args),
    /// Touch, remove or inspect files: mco filemgr [touch|remove|status] --file PATH
    #[command(after_help = "Examples:
  mco filemgr --file /tmp/flag                  # touch
  mco filemgr status --file /etc/motd -F os.family=Debian
  mco filemgr remove -f /tmp/flag -I web01")]
    Filemgr(cmd::filemgr::Args),
    /// Run Puppet and see how it went: mco puppet status|count|summary|runonce|runall N|enable|disable|resource
    #[command(after_help = "Examples:
  mco puppet status
  mco puppet runonce --noop -C role::web
  mco puppet runall 5                     # at most 5 nodes running at once
  mco puppet disable \"deploy in progress\"
  mco puppet resource file /etc/motd content=hello")]
    Puppet(cmd::puppet::Args),
    /// Run the node daemon
    #[command(
        after_help = "Every server.cfg key, its default and an example: docs/configuration.md.\n\
                            Check a file first: mco server --check-config /etc/muster/server.cfg"
    )]
    Server(cmd::server::Args),
    /// Collect the nodes' registrations and answer --dm registry
    #[command(
        after_help = "Example: mco registry --config /etc/muster/registry.cfg\n\
                            See docs/discovery.md, \"Registry\"."
    )]
    Registry(cmd::registry::Args),
    /// Check client.cfg without connecting: every error with its line, or the effective settings
    #[command(after_help = "Examples:
  mco check-config
  mco --config ~/.config/muster/client.cfg check-config

Every client.cfg key, its default and an example: docs/configuration.md.")]
    CheckConfig,
    /// Run the embedded NATS-protocol broker (TLS, client certificates required), or write its rules for nats-server
    #[command(after_help = "Examples:
  mco broker --ssldir /etc/muster/ssl --certname broker1 --listen 0.0.0.0:4222
  mco broker nats-config --ssldir /etc/muster/ssl --certname broker1 > nats-server.conf
  mco broker nats-config --ssldir /etc/muster/ssl --certname broker1 --cluster-listen 0.0.0.0:6222 \\
      --routes nats-route://broker1:6222,nats-route://broker2:6222,nats-route://broker3:6222 \\
      --leafnode-listen 0.0.0.0:7422 --leaf-certnames site1-broker > nats-server.conf
  mco broker nats-config --ssldir /etc/muster/ssl --certname site1-broker \\
      --leaf-remote tls://broker1:7422,tls://broker2:7422 > nats-server.conf   # a leaf site

Clusters and leaf sites: docs/security.md, \"nats-server\".")]
    Broker(cmd::broker::Args),
    /// A fleet CA in Puppet's ssldir layout: mco ca init|issue|revoke
    #[command(after_help = "Examples:
  mco ca init --ssldir ./ssl
  mco ca issue broker1 --ssldir ./ssl --role broker --san broker1.example.net --san 127.0.0.1
  mco ca issue web1.example.net --ssldir ./ssl               # a node
  mco ca issue alice --ssldir ./ssl --role caller            # alice.mcollective
  mco ca revoke alice.mcollective --ssldir ./ssl

A Puppet shop needs none of this: point plugin.security.ssldir at Puppet's ssldir.
See docs/security.md.")]
    Ca(cmd::ca::Args),
    /// Run many simulated nodes in this process against a broker
    Fleet(cmd::fleet::Args),
    /// Start a broker and a simulated fleet, and take a short tour
    Demo(cmd::demo::Args),
    /// Document agents, data plugins and discovery methods: mco plugin doc [NAME]
    #[command(after_help = "Examples:
  mco plugin doc                 # every agent, data plugin and discovery method
  mco plugin doc package         # one agent's actions, inputs and outputs
  mco plugin doc fstat           # a data plugin for -S
  mco plugin ddl2json agent/foo.ddl   # an MCollective Ruby DDL to agent/foo.json")]
    Plugin(cmd::plugin::Args),
    /// List applications, built in and on PATH, or show one's usage: mco help [APP]
    #[command(after_help = "Examples:
  mco help
  mco help rpc
  mco help puppet runall")]
    Help(cmd::help::Args),
    /// Print a shell completion script: mco completion bash|zsh|fish
    #[command(after_help = "Examples:
  mco completion bash > ~/.local/share/bash-completion/completions/mco
  mco completion zsh > ~/.zfunc/_mco              # with fpath+=(~/.zfunc) before compinit
  mco completion fish > ~/.config/fish/completions/mco.fish")]
    Completion(cmd::completion::Args),
    /// Print the manual page (mco.1), or write every page: mco man --out DIR
    #[command(after_help = "Examples:
  mco man | man -l -
  mco man --out /usr/local/share/man/man1")]
    Man(cmd::help::ManArgs),
    /// mco NAME runs the program mco-NAME found on PATH
    #[command(external_subcommand)]
    External(Vec<OsString>),
}

fn main() -> ExitCode {
    exit_quietly_when_stdout_closes();
    let cli = Cli::parse();
    if let Some(config) = &cli.config {
        // Every application, and custom ones after exec, read it from there.
        std::env::set_var(muster_client::CONFIG_ENV, config);
    }
    // These need no runtime; an external application replaces this process.
    let result = match cli.command {
        Command::Help(args) => cmd::help::run(args, Cli::command()),
        Command::Completion(args) => cmd::completion::run(args, Cli::command()),
        Command::Man(args) => cmd::help::man(args, Cli::command()),
        Command::CheckConfig => cmd::check_config::client(cli.config.as_deref()),
        Command::External(argv) => cmd::external::run(argv, &Cli::command()),
        command => run(command),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // `mco find | head -1`: the reader has what it wanted.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mco: {}", error_chain(&e));
            let interrupted = e.downcast_ref::<cmd::interrupt::Interrupted>().is_some();
            ExitCode::from(if interrupted {
                cmd::EXIT_INTERRUPTED
            } else {
                cmd::EXIT_ERROR
            })
        }
    }
}

/// `outer: cause: cause`, as anyhow's `{:#}` prints it, but without a
/// cause whose text the line already holds: library errors may both say
/// their source's message and return it as `source()`.
fn error_chain(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.is_empty() {
            line = text;
        } else if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

/// A closed stdout is success, as in ripgrep. Rust ignores SIGPIPE, so
/// `println!` panics instead of dying quietly; this hook ends the process
/// with 0 on that one panic (from any thread) and leaves every other to
/// the default hook.
fn exit_quietly_when_stdout_closes() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Whether `error` is, somewhere in its chain, a write into a closed pipe.
/// serde_json hides its I/O error from `source()`, so it is asked too.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let kind = cause
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .or_else(|| {
                cause
                    .downcast_ref::<serde_json::Error>()
                    .and_then(serde_json::Error::io_error_kind)
            });
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}

fn run(command: Command) -> anyhow::Result<u8> {
    // Before the runtime's threads start.
    muster_connector::skip_system_roots();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        match command {
            Command::Ping(args) => cmd::ping::run(args).await,
            Command::Rpc(args) => cmd::rpc::run(args).await,
            Command::Find(args) => cmd::find::run(args).await,
            Command::Facts(args) => cmd::facts::run(args).await,
            Command::Inventory(args) => cmd::inventory::run(args).await,
            Command::Package(args) => cmd::package::run(args).await,
            Command::Service(args) => cmd::service::run(args).await,
            Command::Filemgr(args) => cmd::filemgr::run(args).await,
            Command::Puppet(args) => cmd::puppet::run(args).await,
            Command::Server(args) => cmd::server::run(args).await,
            Command::Registry(args) => cmd::registry::run(args).await,
            Command::Broker(args) => cmd::broker::run(args).await,
            Command::Ca(args) => cmd::ca::run(args),
            Command::Fleet(args) => cmd::fleet::run(args).await,
            Command::Demo(args) => cmd::demo::run(args).await,
            Command::Plugin(args) => cmd::plugin::run(args).await,
            Command::Help(_)
            | Command::Completion(_)
            | Command::Man(_)
            | Command::CheckConfig
            | Command::External(_) => {
                unreachable!("handled before the runtime starts")
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_client_application_has_examples() {
        let cli = super::Cli::command();
        for name in [
            "ping",
            "rpc",
            "find",
            "facts",
            "inventory",
            "package",
            "service",
            "puppet",
            "filemgr",
            "plugin",
            "help",
            "completion",
            "man",
        ] {
            let sub = cli.find_subcommand(name).expect(name);
            let after = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(after.starts_with("Examples:\n  mco "), "{name}: {after:?}");
        }
    }

    #[test]
    fn an_error_chain_says_each_cause_once() {
        let io = std::io::Error::other("disk on fire");
        #[derive(Debug)]
        struct Repeats(std::io::Error);
        impl std::fmt::Display for Repeats {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "cannot write /x: {}", self.0)
            }
        }
        impl std::error::Error for Repeats {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = anyhow::Error::new(Repeats(io)).context("saving");
        assert_eq!(
            super::error_chain(&e),
            "saving: cannot write /x: disk on fire"
        );
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::error_chain(&e), "outer: inner");
    }

    #[test]
    fn a_closed_pipe_anywhere_in_the_chain_is_recognised() {
        use std::io::{Error, ErrorKind, Write};
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(Error::from(ErrorKind::BrokenPipe))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let io = anyhow::Error::new(Error::from(ErrorKind::BrokenPipe)).context("writing");
        assert!(super::is_broken_pipe(&io));
        let json = serde_json::to_writer(Closed, &[1, 2]).unwrap_err();
        assert!(super::is_broken_pipe(&anyhow::Error::new(json)));
        let other = anyhow::Error::new(Error::from(ErrorKind::StorageFull));
        assert!(!super::is_broken_pipe(&other));
        assert!(!super::is_broken_pipe(&anyhow::anyhow!("Broken pipe")));
    }

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
