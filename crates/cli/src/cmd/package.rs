//! `mco package PACKAGE ACTION` (or `ACTION PACKAGE`): query and manage packages.

use serde_json::{Map, Value};

use super::action::{self, Line};
use crate::args::Common;

const ACTIONS: &[&str] = &["status", "install", "update", "uninstall", "purge"];

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The package and the action (status, install, update, uninstall, purge), in either order
    pub words: Vec<String>,
    /// The version to install
    #[arg(long = "pkg-version", value_name = "VERSION")]
    pub version: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<u8> {
    let [first, second] = args.words.as_slice() else {
        anyhow::bail!(
            "usage: mco package PACKAGE ACTION (actions: {})",
            ACTIONS.join(", ")
        );
    };
    let (action, package) = action::action_and_target(first, second, ACTIONS)?;
    let mut data = Map::new();
    data.insert("package".into(), Value::String(package));
    if let Some(version) = args.version {
        data.insert("version".into(), Value::String(version));
    }
    action::run(
        &args.common,
        "package",
        &action,
        data,
        Line::Field("ensure"),
    )
    .await
}
