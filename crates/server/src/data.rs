//! Data plugins for `-S` compound filters: `fstat('/etc/hosts').size>0`.
//!
//! Each plugin takes its one argument and answers a map of properties that
//! the filter compares against. `fstat` keeps the property names and values
//! of MCollective 2.12's plugin; `process` and `sysctl` are muster's own.
//! An `Err` means the plugin could not answer on this node (permission
//! denied, a malformed argument): the node does not match, and the caller
//! counts it. Nothing here panics on odd files or a changing `/proc`.
//!
//! ```
//! let hosts = muster_server::data::fstat("/proc/self")?;
//! assert_eq!(hosts["present"], 1);
//! let ostype = muster_server::data::sysctl("kernel.ostype")?;
//! assert_eq!(ostype["value"], "Linux");
//! # Ok::<(), String>(())
//! ```

use std::fs::Metadata;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use md5::Md5;
use serde_json::{json, Map, Value};

/// A plugin's answer: property name to value.
pub type Properties = Map<String, Value>;

/// Longest `sysctl` name accepted; real ones are far shorter.
const MAX_SYSCTL_NAME: usize = 512;
/// Sysctl values larger than this are cut (none real comes close).
const MAX_SYSCTL_VALUE: u64 = 1 << 20;

/// MCollective's `fstat` data plugin: what `path` is.
///
/// A missing path is not an error: `output` is "not present", `present` 0,
/// and the other properties keep MCollective's defaults (`type` "unknown",
/// `mode` "0000", numbers 0). As in MCollective a symlink is described
/// itself (`type` "symlink") but counts as present only when its target
/// exists. `md5` is the digest of a regular file's contents, read as a
/// stream. Times are UTC ("2026-11-25 17:56:57 +0000").
pub fn fstat(path: &str) -> Result<Properties, String> {
    let mut result = not_present(path);
    // MCollective asks File.exists?, which follows symlinks.
    match std::fs::metadata(path) {
        Ok(_) => {}
        // Ruby's File.exists? is false for these too.
        Err(e)
            if is_missing(&e)
                || matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENAMETOOLONG)) =>
        {
            return Ok(result)
        }
        Err(e) => return Err(format!("fstat('{path}'): {e}")),
    }
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("fstat('{path}'): {e}"))?;
    result.insert("output".into(), json!("present"));
    result.insert("present".into(), json!(1));
    result.insert("type".into(), json!(file_type(&meta)));
    result.insert("size".into(), json!(meta.size()));
    result.insert("uid".into(), json!(meta.uid()));
    result.insert("gid".into(), json!(meta.gid()));
    result.insert("mode".into(), json!(format!("{:o}", meta.mode())));
    let now = unix_now();
    for (name, seconds) in [
        ("atime", meta.atime()),
        ("mtime", meta.mtime()),
        ("ctime", meta.ctime()),
    ] {
        result.insert(name.into(), json!(format_utc(seconds)));
        result.insert(format!("{name}_seconds"), json!(seconds));
        result.insert(format!("{name}_age"), json!(now.saturating_sub(seconds)));
    }
    if meta.file_type().is_file() {
        result.insert(
            "md5".into(),
            json!(md5_file(Path::new(path)).map_err(|e| format!("fstat('{path}'): md5: {e}"))?),
        );
    }
    Ok(result)
}

/// Not found, or a path component is not a directory (`ErrorKind::NotADirectory`
/// is newer than this workspace's minimum Rust).
fn is_missing(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

fn not_present(path: &str) -> Properties {
    let mut result = Map::new();
    result.insert("name".into(), json!(path));
    result.insert("output".into(), json!("not present"));
    result.insert("present".into(), json!(0));
    result.insert("type".into(), json!("unknown"));
    result.insert("mode".into(), json!("0000"));
    for key in [
        "size",
        "uid",
        "gid",
        "md5",
        "atime",
        "mtime",
        "ctime",
        "atime_seconds",
        "mtime_seconds",
        "ctime_seconds",
    ] {
        result.insert(key.into(), json!(0));
    }
    result
}

fn file_type(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "symlink"
    } else if t.is_file() {
        "file"
    } else if t.is_dir() {
        "directory"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "chardev"
    } else if t.is_block_device() {
        "blockdev"
    } else if t.is_fifo() {
        "fifo"
    } else {
        "unknown"
    }
}

fn md5_file(path: &Path) -> std::io::Result<String> {
    hash_file::<Md5>(path)
}

/// A file's digest as lowercase hex, read in 64 KiB pieces.
pub(crate) fn hash_file<D: md5::Digest>(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = D::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix seconds as "YYYY-MM-DD HH:MM:SS +0000".
pub fn format_utc(seconds: i64) -> String {
    format!("{} +0000", muster_protocol::time::utc(seconds))
}

/// Is a process called `name` running? A process matches when its `comm`
/// or the base name of its `argv[0]` equals `name`. Answers `exists`,
/// `count` and the sorted `pids`.
pub fn process(name: &str) -> Result<Properties, String> {
    process_in(Path::new("/proc"), name)
}

fn process_in(proc_root: &Path, name: &str) -> Result<Properties, String> {
    if name.is_empty() {
        return Err("process(''): the process name is empty".to_string());
    }
    let entries = std::fs::read_dir(proc_root)
        .map_err(|e| format!("process('{name}'): {}: {e}", proc_root.display()))?;
    let mut pids: Vec<u64> = entries
        .flatten()
        .filter_map(|entry| {
            let pid: u64 = entry.file_name().to_str()?.parse().ok()?;
            process_matches(&entry.path(), name).then_some(pid)
        })
        .collect();
    pids.sort_unstable();
    let mut result = Map::new();
    result.insert("exists".into(), json!(!pids.is_empty()));
    result.insert("count".into(), json!(pids.len()));
    result.insert("pids".into(), json!(pids));
    Ok(result)
}

/// Unreadable or vanished processes simply do not match.
fn process_matches(dir: &Path, name: &str) -> bool {
    if let Ok(comm) = std::fs::read(dir.join("comm")) {
        if comm.strip_suffix(b"\n").unwrap_or(&comm) == name.as_bytes() {
            return true;
        }
    }
    let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
        return false;
    };
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or(&[]);
    let base = argv0.rsplit(|&b| b == b'/').next().unwrap_or(argv0);
    !base.is_empty() && base == name.as_bytes()
}

/// A kernel parameter, `net.ipv4.ip_forward` read from
/// `/proc/sys/net/ipv4/ip_forward`. Answers `value`: the text trimmed, runs
/// of blanks between several values made single spaces.
pub fn sysctl(name: &str) -> Result<Properties, String> {
    sysctl_in(Path::new("/proc/sys"), name)
}

fn sysctl_in(root: &Path, name: &str) -> Result<Properties, String> {
    let shown: String = name.chars().take(80).collect();
    let bad = |why: &str| Err(format!("sysctl('{shown}'): {why}"));
    if name.is_empty() {
        return bad("the name is empty");
    }
    if name.len() > MAX_SYSCTL_NAME {
        return bad("the name is too long");
    }
    if name.contains('/') || name.contains("..") {
        return bad("a name is dotted words like net.ipv4.ip_forward, without '/' or '..'");
    }
    if name.split('.').any(str::is_empty) {
        return bad("a name part is empty");
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("the name contains blanks or control characters");
    }
    let path = name
        .split('.')
        .fold(root.to_path_buf(), |p, part| p.join(part));
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if is_missing(&e) => return bad("no such sysctl"),
        Err(e) => return Err(format!("sysctl('{shown}'): {e}")),
    };
    let mut text = Vec::new();
    match file.take(MAX_SYSCTL_VALUE).read_to_end(&mut text) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {
            return bad("no such sysctl (that is a group of them)")
        }
        Err(e) => return Err(format!("sysctl('{shown}'): {e}")),
    }
    let value = String::from_utf8_lossy(&text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut result = Map::new();
    result.insert("value".into(), json!(value));
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn fstat_regular_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hosts");
        std::fs::write(&path, "hello\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let p = path.to_str().expect("utf-8 path");
        let r = fstat(p).expect("fstat");
        assert_eq!(r["name"], p);
        assert_eq!(r["output"], "present");
        assert_eq!(r["present"], 1);
        assert_eq!(r["type"], "file");
        assert_eq!(r["size"], 6);
        assert_eq!(r["mode"], "100640");
        assert_eq!(r["md5"], "b1946ac92492d2347c6235b4d2611184");
        assert!(r["mtime_seconds"].as_i64() > Some(1_600_000_000));
        assert!(r["mtime_age"]
            .as_i64()
            .is_some_and(|a| (0..600).contains(&a)));
        assert!(
            r["ctime"]
                .as_str()
                .is_some_and(|t| t.ends_with(" +0000") && t.len() == 25),
            "{}",
            r["ctime"]
        );
        assert_eq!(
            r["uid"],
            json!(std::fs::metadata(&path).expect("meta").uid())
        );
    }

    #[test]
    fn fstat_empty_file_md5() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("empty");
        std::fs::write(&path, "").expect("write");
        let r = fstat(path.to_str().expect("utf-8")).expect("fstat");
        assert_eq!(r["md5"], "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(r["size"], 0);
    }

    #[test]
    fn fstat_kinds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let s = |p: &Path| fstat(p.to_str().expect("utf-8")).expect("fstat");
        let r = s(d);
        assert_eq!(
            (r["type"].as_str(), r["md5"].clone()),
            (Some("directory"), json!(0))
        );
        assert!(r["mode"].as_str().is_some_and(|m| m.starts_with("40")));
        std::fs::write(d.join("target"), "x").expect("write");
        symlink(d.join("target"), d.join("link")).expect("symlink");
        let r = s(&d.join("link"));
        assert_eq!(
            (r["type"].as_str(), r["present"].as_i64()),
            (Some("symlink"), Some(1))
        );
        assert!(r["mode"].as_str().is_some_and(|m| m.starts_with("120")));
        symlink(d.join("nowhere"), d.join("dangling")).expect("symlink");
        assert_eq!(s(&d.join("dangling"))["output"], "not present");
        assert_eq!(s(Path::new("/dev/null"))["type"], "chardev");
        let _listener = std::os::unix::net::UnixListener::bind(d.join("sock")).expect("bind");
        assert_eq!(s(&d.join("sock"))["type"], "socket");
        assert_eq!(s(Path::new("/proc/self"))["type"], "symlink");
    }

    #[test]
    fn fstat_missing_and_hostile_paths() {
        for path in [
            "/no/such/file",
            "",
            "/etc/passwd/below-a-file",
            &"a".repeat(5000),
            "../../../../no-such",
        ] {
            let r = fstat(path).unwrap_or_else(|e| panic!("{path:.40}: {e}"));
            assert_eq!(r["output"], "not present", "{path:.40}");
            assert_eq!(r["present"], 0);
            assert_eq!(r["type"], "unknown");
            assert_eq!(r["mode"], "0000");
            assert_eq!(r["size"], 0);
        }
        assert!(fstat("nul\0inside").is_err());
    }

    #[test]
    fn fstat_unreadable_file_is_an_error() {
        if is_root() {
            return; // root reads everything
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "x").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).expect("chmod");
        let err = fstat(path.to_str().expect("utf-8")).unwrap_err();
        assert!(err.contains("md5") && err.contains("secret"), "{err}");
    }

    #[test]
    fn utc_times() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 +0000");
    }

    #[test]
    fn process_finds_this_test() {
        let comm = std::fs::read_to_string("/proc/self/comm").expect("comm");
        let me = std::process::id() as u64;
        let r = process(comm.trim()).expect("process");
        assert_eq!(r["exists"], true);
        assert!(r["count"].as_u64() >= Some(1));
        let pids = r["pids"].as_array().expect("pids");
        assert!(pids.contains(&json!(me)), "{r:?}");
        let exe = std::env::current_exe().expect("exe");
        let base = exe.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(process(base).expect("process")["pids"]
            .as_array()
            .is_some_and(|p| p.contains(&json!(me))));
        let sorted: Vec<u64> = pids.iter().filter_map(Value::as_u64).collect();
        assert!(sorted.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn process_hostile_names() {
        let r = process("no-such-process-name-at-all").expect("process");
        assert_eq!(
            (r["exists"].clone(), r["count"].clone(), r["pids"].clone()),
            (json!(false), json!(0), json!([]))
        );
        assert!(process("").is_err());
        assert_eq!(
            process(&"x".repeat(100_000)).expect("process")["exists"],
            false
        );
        assert_eq!(
            process("../../etc/passwd").expect("process")["exists"],
            false
        );
    }

    #[test]
    fn process_in_a_fake_proc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let add = |pid: &str, comm: Option<&[u8]>, cmdline: Option<&[u8]>| {
            let p = dir.path().join(pid);
            std::fs::create_dir(&p).expect("mkdir");
            if let Some(c) = comm {
                std::fs::write(p.join("comm"), c).expect("comm");
            }
            if let Some(c) = cmdline {
                std::fs::write(p.join("cmdline"), c).expect("cmdline");
            }
        };
        add(
            "10",
            Some(b"redis-server\n"),
            Some(b"/usr/bin/redis-server\0*:6379\0"),
        );
        add(
            "9",
            Some(b"redis-check\n"),
            Some(b"/usr/local/bin/redis-server\0"),
        );
        add("200", Some(b"bash\n"), Some(b"redis-server\0"));
        add("30", Some(b"kworker/0:1\n"), Some(b""));
        add("31", None, None); // vanished mid-scan
        add("self", Some(b"redis-server\n"), None);
        add("40", Some(b"redis-serv\n"), Some(b"redis-serv\0"));
        let r = process_in(dir.path(), "redis-server").expect("process");
        assert_eq!(r["pids"], json!([9, 10, 200]));
        assert_eq!(r["count"], 3);
        assert_eq!(
            process_in(dir.path(), "kworker/0:1").expect("process")["pids"],
            json!([30])
        );
        assert!(process_in(&dir.path().join("missing"), "x").is_err());
    }

    #[test]
    fn sysctl_reads_proc_sys() {
        assert_eq!(sysctl("kernel.ostype").expect("sysctl")["value"], "Linux");
        let err = sysctl("kernel.no_such_key").unwrap_err();
        assert!(err.contains("no such sysctl"), "{err}");
        let err = sysctl("kernel").unwrap_err();
        assert!(err.contains("no such sysctl"), "{err}");
    }

    #[test]
    fn sysctl_values_are_normalised() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("net/ipv4")).expect("mkdir");
        std::fs::write(
            dir.path().join("net/ipv4/ip_local_port_range"),
            "32768\t60999\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("net/ipv4/ip_forward"), "1\n").expect("write");
        let v = |n: &str| sysctl_in(dir.path(), n).map(|r| r["value"].clone());
        assert_eq!(v("net.ipv4.ip_local_port_range"), Ok(json!("32768 60999")));
        assert_eq!(v("net.ipv4.ip_forward"), Ok(json!("1")));
        assert!(v("net.ipv4.ip_forward.x").is_err_and(|e| e.contains("no such sysctl")));
    }

    #[test]
    fn sysctl_hostile_names() {
        for name in [
            "",
            "../../etc/passwd",
            "..",
            "net..ipv4",
            ".net",
            "net.",
            "net/ipv4/ip_forward",
            "/etc/passwd",
            "kernel.ostype\0",
            "kernel. ostype",
            &"a.".repeat(1000),
            &"k".repeat(100_000),
        ] {
            let err = sysctl(name).unwrap_err();
            assert!(
                err.starts_with("sysctl('") && err.len() < 300,
                "{name:.40}: {err}"
            );
        }
    }
}
