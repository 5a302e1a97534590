//! `mco`: muster's one binary — client applications, node daemon and
//! embedded broker. This file only parses arguments and dispatches; the
//! work lives in the library crates and in `cmd/`.

mod args;
mod cmd;
mod render;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "mco",
    version,
    about = "muster: fleet orchestration in the tradition of MCollective"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ping every matching node and show its round-trip time
    Ping(cmd::ping::Args),
    /// Run an agent's action on matching nodes: mco rpc AGENT ACTION [key=value ...]
    Rpc(cmd::rpc::Args),
    /// List the identities of matching nodes, one per line
    Find(cmd::find::Args),
    /// Show how a fact's values are spread over matching nodes: mco facts FACT
    Facts(cmd::facts::Args),
    /// Show everything a node knows about itself: mco inventory NODE (--json: node records)
    Inventory(cmd::inventory::Args),
    /// Query and manage packages: mco package PACKAGE ACTION
    Package(cmd::package::Args),
    /// Query and control services: mco service SERVICE ACTION
    Service(cmd::service::Args),
    /// Touch, remove or inspect files: mco filemgr [touch|remove|status] --file PATH
    Filemgr(cmd::filemgr::Args),
    /// Run Puppet and see how it went: mco puppet status|count|summary|runonce|runall N|enable|disable|resource
    Puppet(cmd::puppet::Args),
    /// Run the node daemon
    Server(cmd::server::Args),
    /// Run the embedded NATS-protocol broker
    Broker(cmd::broker::Args),
    /// Run many simulated nodes in this process against a broker
    Fleet(cmd::fleet::Args),
    /// Start a broker and a simulated fleet, and take a short tour
    Demo(cmd::demo::Args),
    /// Document agents, data plugins and discovery methods: mco plugin doc [NAME]
    Plugin(cmd::plugin::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mco: cannot start the async runtime: {e}");
            return ExitCode::from(cmd::EXIT_ERROR);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
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
            Command::Broker(args) => cmd::broker::run(args).await,
            Command::Fleet(args) => cmd::fleet::run(args).await,
            Command::Demo(args) => cmd::demo::run(args).await,
            Command::Plugin(args) => cmd::plugin::run(args).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("mco: {e:#}");
            ExitCode::from(cmd::EXIT_ERROR)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
