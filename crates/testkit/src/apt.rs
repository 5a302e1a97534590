//! A local apt repository with a tiny test package, for tests of the
//! package agent against the machine's real dpkg and apt.
//!
//! The package is built with `dpkg-deb` in two versions and served from a
//! file repository that apt reads through its own temporary lists (never
//! the network, never the machine's sources). [`PurgeOnDrop`] removes it
//! again whatever happens.

use std::path::{Path, PathBuf};
use std::process::Command;

use md5::Md5;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// The test package's name.
pub const PACKAGE: &str = "muster-test-pkg";
/// A file the package installs, holding its version.
pub const PAYLOAD: &str = "/usr/share/muster-test-pkg/VERSION";

/// Runs a program that must succeed.
pub fn run(program: &str, args: &[&str]) -> std::process::Output {
    let output = Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The test package's version as dpkg itself reports it, if installed.
pub fn dpkg_version() -> Option<String> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}\t${Version}", PACKAGE])
        .output()
        .expect("dpkg-query runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (status, version) = text.split_once('\t')?;
    status.ends_with(" installed").then(|| version.to_string())
}

/// Purges the test package when dropped, so a failed assertion leaves the
/// machine as it was.
pub struct PurgeOnDrop;

impl Drop for PurgeOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", PACKAGE])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output();
    }
}

/// A local apt repository with the test package at 1.0 and 1.1, and the
/// apt options that make apt read only it.
pub struct Repository {
    _dir: TempDir,
    /// `-o ...` options that make apt-get read only this repository.
    pub apt_options: String,
}

impl Repository {
    /// Builds the test packages and a file repository holding them.
    pub fn build() -> Repository {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let repo = root.join("repo");
        std::fs::create_dir_all(&repo).expect("mkdir repo");
        let mut index = String::new();
        for version in ["1.0", "1.1"] {
            let deb = build_deb(root, &repo, version);
            let bytes = std::fs::read(&deb).expect("read .deb");
            index.push_str(&format!(
                "Package: {PACKAGE}\nVersion: {version}\nArchitecture: all\n\
                 Maintainer: muster tests <muster@localhost>\n\
                 Filename: ./{}\nSize: {}\nMD5sum: {}\nSHA256: {}\n\
                 Description: muster package agent test package\n\n",
                deb.file_name().and_then(|n| n.to_str()).expect("name"),
                bytes.len(),
                hex(&Md5::digest(&bytes)),
                hex(&Sha256::digest(&bytes)),
            ));
        }
        std::fs::write(repo.join("Packages"), index).expect("write Packages");
        let sources = root.join("sources.list");
        std::fs::write(
            &sources,
            format!("deb [trusted=yes] file:{} ./\n", repo.display()),
        )
        .expect("write sources.list");
        for sub in ["lists/partial", "log"] {
            std::fs::create_dir_all(root.join(sub)).expect("mkdir");
        }
        // apt's state and caches stay in the temporary directory.
        let apt_options = [
            format!("Dir::Etc::SourceList={}", sources.display()),
            "Dir::Etc::SourceParts=/dev/null".into(),
            format!("Dir::State::Lists={}", root.join("lists").display()),
            format!(
                "Dir::State::extended_states={}",
                root.join("extended_states").display()
            ),
            "Dir::Cache::pkgcache=".into(),
            "Dir::Cache::srcpkgcache=".into(),
            format!("Dir::Log={}", root.join("log").display()),
            "APT::Get::List-Cleanup=0".into(),
            "APT::Sandbox::User=root".into(),
            "Acquire::Languages=none".into(),
        ]
        .iter()
        .map(|option| format!("-o {option}"))
        .collect::<Vec<_>>()
        .join(" ");
        let mut update: Vec<&str> = apt_options.split_whitespace().collect();
        update.extend(["-q", "update"]);
        run("apt-get", &update);
        Repository {
            _dir: dir,
            apt_options,
        }
    }
}

fn build_deb(root: &Path, repo: &Path, version: &str) -> PathBuf {
    let tree = root.join(format!("build-{version}"));
    let share = tree.join("usr/share").join(PACKAGE);
    std::fs::create_dir_all(tree.join("DEBIAN")).expect("mkdir DEBIAN");
    std::fs::create_dir_all(&share).expect("mkdir share");
    std::fs::write(share.join("VERSION"), format!("{version}\n")).expect("payload");
    std::fs::write(
        tree.join("DEBIAN/control"),
        format!(
            "Package: {PACKAGE}\nVersion: {version}\nArchitecture: all\n\
             Maintainer: muster tests <muster@localhost>\n\
             Description: muster package agent test package\n"
        ),
    )
    .expect("control");
    let deb = repo.join(format!("{PACKAGE}_{version}_all.deb"));
    run(
        "dpkg-deb",
        &[
            "--root-owner-group",
            "--build",
            tree.to_str().expect("utf-8"),
            deb.to_str().expect("utf-8"),
        ],
    );
    deb
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether this process runs as root (dpkg needs it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}
