//! `mco filemgr [touch|remove|status] --file PATH`: files on many nodes.

use serde_json::{Map, Value};

use super::action::{self, Line};
use crate::args::Common;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// touch (the default, as in MCollective), remove or status
    #[arg(default_value = "touch", value_parser = ["touch", "remove", "status"])]
    pub action: String,
    /// The file to act on (an absolute path)
    #[arg(long, short = 'f', value_name = "PATH")]
    pub file: String,
    #[command(flatten)]
    pub common: Common,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<u8> {
    let mut data = Map::new();
    data.insert("file".into(), Value::String(args.file));
    let line = Line::Field("output");
    action::run(&args.common, "filemgr", &args.action, data, line).await
}
