//! `mco package PACKAGE ACTION` (or `ACTION PACKAGE`): query and manage
//! packages; `mco package count` (and the other actions on the whole
//! package system) as upstream's application takes them.

use serde_json::{Map, Value};

use super::action::{self, Line};
use crate::args::Common;

const ACTIONS: &[&str] = &[
    "status",
    "install",
    "update",
    "uninstall",
    "purge",
    "search",
];

/// Actions on the whole package system, which take no package.
const GLOBAL: &[&str] = &[
    "count",
    "md5",
    "checkupdates",
    "apt_checkupdates",
    "yum_checkupdates",
    "apt_update",
    "yum_clean",
    "refresh",
];

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The package and the action (status, install, update, uninstall, purge, search), in
    /// either order; or one of count, md5, checkupdates, apt_checkupdates, yum_checkupdates,
    /// apt_update, yum_clean, refresh alone
    pub words: Vec<String>,
    /// The version to install
    #[arg(long = "pkg-version", value_name = "VERSION")]
    pub version: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<u8> {
    if let [action] = args.words.as_slice() {
        if GLOBAL.contains(&action.as_str()) {
            let line = match action.as_str() {
                "count" | "md5" | "yum_clean" => Line::Field("output"),
                _ => Line::Format(outdated),
            };
            return action::run(&args.common, "package", action, Map::new(), line).await;
        }
    }
    let [first, second] = args.words.as_slice() else {
        anyhow::bail!(
            "usage: mco package PACKAGE ACTION (actions: {}), or mco package ACTION ({})",
            ACTIONS.join(", "),
            GLOBAL.join(", ")
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
        Line::Field(if action == "search" {
            "package_count"
        } else {
            "ensure"
        }),
    )
    .await
}

/// The names of the outdated packages, as upstream's application lists them.
fn outdated(data: &Value) -> String {
    let names: Vec<&str> = data["outdated_packages"]
        .as_array()
        .map(|list| list.iter().filter_map(|p| p["package"].as_str()).collect())
        .unwrap_or_default();
    if names.is_empty() {
        "up to date".into()
    } else {
        names.join(" ")
    }
}
