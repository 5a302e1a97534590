//! `mco plugin ddl2json FILE.ddl [OUTPUT]`: an MCollective Ruby DDL to
//! Choria's JSON DDL, which muster reads.
//!
//! The JSON goes beside the DDL (`agent/foo.ddl` to `agent/foo.json`,
//! where muster looks for it), to OUTPUT, or to stdout with `-`. An
//! existing file is kept unless `--force`. Every statement left out is
//! named on stderr as `FILE:LINE: text (why)`; the exit status is 1 only
//! when nothing usable came out.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use muster_protocol::ruby_ddl::{self, RubyDdlError};

/// Converts `file`, writing to `output` (`-`: stdout).
pub(crate) fn run(file: Option<&str>, output: Option<&str>, force: bool) -> anyhow::Result<u8> {
    let Some(file) = file else {
        anyhow::bail!(
            "mco plugin ddl2json needs a Ruby DDL: mco plugin ddl2json FILE.ddl [OUTPUT|-]"
        );
    };
    let source = Path::new(file);
    let target = match output {
        Some("-") => None,
        Some(path) => Some(PathBuf::from(path)),
        None => Some(source.with_extension("json")),
    };
    if let Some(target) = target.as_ref().filter(|t| t.exists() && !force) {
        anyhow::bail!(
            "{} exists; not overwritten (--force replaces it, - writes to stdout)",
            target.display()
        );
    }
    let text =
        std::fs::read_to_string(source).with_context(|| format!("reading {}", source.display()))?;
    let converted = match ruby_ddl::convert(&text) {
        Ok(converted) => converted,
        Err(RubyDdlError::NothingUsable { what, skipped }) => {
            for line in &skipped {
                eprintln!("{}:{line}", source.display());
            }
            eprintln!(
                "{}: nothing usable converted ({what}); no JSON written",
                source.display()
            );
            return Ok(super::EXIT_FAILED);
        }
    };
    for line in &converted.skipped {
        eprintln!("{}:{line}", source.display());
    }
    // What muster will make of it: a loader's refusal is worth knowing now.
    if let Err(e) = muster_protocol::ddl::Ddl::from_json(&converted.text) {
        eprintln!(
            "warning: muster cannot load the converted DDL as it is: {e}; edit the JSON by hand"
        );
    }
    let Some(target) = target else {
        print!("{}", converted.text);
        return Ok(super::EXIT_OK);
    };
    std::fs::write(&target, &converted.text)
        .with_context(|| format!("writing {}", target.display()))?;
    let actions = converted.json["actions"].as_array().map_or(0, Vec::len);
    eprintln!(
        "wrote {} ({actions} action{}, {} statement{} not converted as written)",
        target.display(),
        if actions == 1 { "" } else { "s" },
        converted.skipped.len(),
        if converted.skipped.len() == 1 {
            ""
        } else {
            "s"
        },
    );
    Ok(super::EXIT_OK)
}
