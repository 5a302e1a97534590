//! `mco service SERVICE ACTION` (or `ACTION SERVICE`): query and control services.

use serde_json::{Map, Value};

use super::action::{self, Line};
use crate::args::Common;

const ACTIONS: &[&str] = &["status", "start", "stop", "restart"];

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The service and the action (status, start, stop, restart), in either order
    pub words: Vec<String>,
    #[command(flatten)]
    pub common: Common,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<u8> {
    let [first, second] = args.words.as_slice() else {
        anyhow::bail!(
            "usage: mco service SERVICE ACTION (actions: {})",
            ACTIONS.join(", ")
        );
    };
    let (action, service) = action::action_and_target(first, second, ACTIONS)?;
    let mut data = Map::new();
    data.insert("service".into(), Value::String(service));
    action::run(
        &args.common,
        "service",
        &action,
        data,
        Line::Field("status"),
    )
    .await
}
