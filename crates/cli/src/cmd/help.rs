//! `mco help [APP]` and `mco man [--out DIR]`: what applications there
//! are, built in or on PATH, and how each is used.
//!
//! Everything here is generated from the clap definition in `main.rs`, so
//! the list, `mco APP --help`, the completions and the man pages cannot
//! disagree.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use super::external::{self, Application};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The application to explain, with its subcommand if it has them (e.g. `puppet runonce`)
    #[arg(value_name = "APP")]
    pub app: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ManArgs {
    /// Write mco.1 and a page per application (mco-ping.1, ...) into DIR instead of printing mco.1
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub(crate) fn run(args: Args, cli: clap::Command) -> anyhow::Result<u8> {
    let Some(name) = args.app.first() else {
        list(&mut std::io::stdout().lock(), &cli, &external::on_path())?;
        return Ok(super::EXIT_OK);
    };
    if is_builtin(&cli, name) {
        let mut argv = vec!["mco".to_string()];
        argv.extend(args.app.iter().cloned());
        argv.push("--help".into());
        return match cli.try_get_matches_from(argv) {
            Err(e) => {
                e.print()?;
                Ok(if e.use_stderr() {
                    super::EXIT_ERROR
                } else {
                    super::EXIT_OK
                })
            }
            Ok(_) => Ok(super::EXIT_OK),
        };
    }
    let Some(program) = external::find(name) else {
        anyhow::bail!(external::unknown(name, &cli));
    };
    let status = external::command(&program, &["--help".into()])
        .status()
        .with_context(|| format!("cannot run {}", program.display()))?;
    Ok(status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(super::EXIT_ERROR))
}

fn is_builtin(cli: &clap::Command, name: &str) -> bool {
    cli.get_subcommands()
        .any(|c| c.get_name() == name || c.get_all_aliases().any(|a| a == name))
}

/// One line per application, built-in and external together, sorted.
pub(crate) fn list(
    out: &mut dyn Write,
    cli: &clap::Command,
    external: &[Application],
) -> std::io::Result<()> {
    let mut lines: Vec<(String, String)> = cli
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| {
            let about = c.get_about().map(|a| a.to_string()).unwrap_or_default();
            (c.get_name().to_string(), about)
        })
        .collect();
    for app in external {
        // A built-in shadows a program of the same name.
        if !is_builtin(cli, &app.name) {
            lines.push((
                app.name.clone(),
                format!("external application ({}{})", external::PREFIX, app.name),
            ));
        }
    }
    lines.sort();
    let width = lines.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    if let Some(about) = cli.get_about() {
        writeln!(out, "{about}\n")?;
    }
    writeln!(out, "Usage: mco [--config FILE] APP [ARGS]...\n")?;
    writeln!(out, "Applications:")?;
    for (name, about) in &lines {
        writeln!(out, "  {name:width$}  {about}")?;
    }
    writeln!(
        out,
        "\nmco help APP (or mco APP --help) shows an application's usage and examples.\n\
         Any executable {prefix}NAME on PATH runs as `mco NAME` and is listed as external.",
        prefix = external::PREFIX
    )
}

/// `mco man`: mco.1 on stdout, or every page into `--out DIR`.
pub(crate) fn man(args: ManArgs, cli: clap::Command) -> anyhow::Result<u8> {
    let mut cli = cli;
    cli.build();
    match args.out {
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(cli).render(&mut out)?;
            out.flush()?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let mut out = std::io::stdout().lock();
            for path in write_pages(cli, &dir)? {
                writeln!(out, "{}", path.display())?;
            }
        }
    }
    Ok(super::EXIT_OK)
}

/// Writes the page of `cli` and of each visible subcommand, recursively;
/// returns the files written.
fn write_pages(cli: clap::Command, dir: &std::path::Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        written.extend(write_pages(sub.clone(), dir)?);
    }
    let page = clap_mangen::Man::new(cli);
    let path = page
        .generate_to(dir)
        .with_context(|| format!("cannot write a man page into {}", dir.display()))?;
    written.push(path);
    Ok(written)
}
