//! Data plugins for `-S` compound filters: `fstat('/etc/hosts').size>0`.
//!
//! Each plugin takes its one argument and answers a map of properties that
//! the filter compares against. `fstat` keeps the property names and values
//! of MCollective 2.12's plugin; `process` and `sysctl` are muster's own;
//! `puppet()` is the puppet agent's (MCollective's `puppet_data.rb`), which
//! the agent answers from the files its `status` action reads
//! ([`crate::Agent::data`], [`puppet_properties`]). The same plugins serve
//! `-S` filters, `rpcutil get_data` and action policies.
//! An `Err` means the plugin could not answer on this node (permission
//! denied, a malformed argument, a bound below exceeded): the node does not
//! match, and the caller counts it. Nothing here panics on odd files or a
//! changing `/proc`.
//!
//! Any caller can make a node run these, before it is known whether the
//! caller may do anything at all, so each plugin is bounded in what it
//! opens, how much it reads and how long it reads (the `MAX_*` and `*_BUDGET`
//! constants): `fstat` only ever reads a regular file of at most
//! [`MAX_HASH_BYTES`] outside `/proc`, `/sys` and the other kernel
//! filesystems, and never opens a FIFO, device or socket, so it cannot block.
//! The one thing no in-process bound covers is a filesystem whose `stat`
//! itself hangs (a dead NFS server, a stuck FUSE daemon).
//!
//! ```
//! let hosts = muster_server::data::fstat("/proc/self")?;
//! assert_eq!(hosts["present"], 1);
//! let ostype = muster_server::data::sysctl("kernel.ostype")?;
//! assert_eq!(ostype["value"], "Linux");
//! # Ok::<(), muster_server::data::DataError>(())
//! ```

use std::fs::{File, Metadata, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use md5::Md5;
use serde_json::{json, Map, Value};

/// Why a data plugin could not answer on this node; the node then does
/// not match, and counts the error.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// No plugin of that name.
    #[error("unknown data plugin {0:?}")]
    UnknownPlugin(String),
    /// `fstat` could not `stat` the path.
    #[error("fstat('{path}'): {source}")]
    Stat {
        /// The path as asked.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// `fstat` could not hash the regular file at the path.
    #[error("fstat('{path}'): md5: {source}")]
    Md5 {
        /// The path as asked.
        path: String,
        /// Why the digest failed.
        source: HashError,
    },
    /// `process('')`.
    #[error("process(''): the process name is empty")]
    EmptyProcessName,
    /// The process table could not be listed.
    #[error("process('{name}'): {}: {source}", proc_root.display())]
    ProcessTable {
        /// The name asked for (at most 80 characters of it).
        name: String,
        /// The directory listed (`/proc`).
        proc_root: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The process table has more than [`MAX_PROCESS_ENTRIES`] entries.
    #[error("process('{name}'): {} has more than {max_entries} entries; not counted", proc_root.display())]
    TooManyProcesses {
        /// The name asked for (at most 80 characters of it).
        name: String,
        /// The directory listed (`/proc`).
        proc_root: PathBuf,
        /// The bound.
        max_entries: usize,
    },
    /// Scanning the process table took longer than [`PROCESS_TIME_BUDGET`].
    #[error("process('{name}'): took longer than {} s; not counted", budget.as_secs_f64())]
    ProcessScanTooSlow {
        /// The name asked for (at most 80 characters of it).
        name: String,
        /// The bound.
        budget: Duration,
    },
    /// The sysctl name is malformed, or names no readable parameter.
    #[error("sysctl('{name}'): {reason}")]
    NoSysctl {
        /// The name asked for (at most 80 characters of it).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The plugin's subject is not on this node (`puppet()` without Puppet).
    #[error("{plugin}(): {reason}")]
    Unavailable {
        /// The plugin.
        plugin: &'static str,
        /// Why it cannot answer.
        reason: String,
    },
    /// A plugin that takes no argument was given one.
    #[error("{plugin}('{argument}'): {plugin}() takes no argument")]
    NoArgument {
        /// The plugin.
        plugin: &'static str,
        /// The argument given (at most 80 characters of it).
        argument: String,
    },
    /// The sysctl's file could not be opened or read.
    #[error("sysctl('{name}'): {source}")]
    SysctlRead {
        /// The name asked for (at most 80 characters of it).
        name: String,
        /// The file below `/proc/sys`.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

/// Why a file's digest could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Opening or reading the file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// `fstatfs` on the opened file failed.
    #[error("fstatfs: {0}")]
    Statfs(#[source] rustix::io::Errno),
    /// The path named another file by the time it was opened or reread.
    #[error("the file changed while being hashed; not hashed")]
    Changed,
    /// Reading took longer than the time budget.
    #[error("took longer than {} s; not hashed", budget.as_secs_f64())]
    TooSlow {
        /// The bound ([`HASH_TIME_BUDGET`]).
        budget: Duration,
    },
}

/// A plugin's answer: property name to value.
pub type Properties = Map<String, Value>;

/// Largest file whose digest `fstat` (`md5`) and filemgr (`sha256`)
/// compute: 64 MiB. A bigger regular file is described (size, times, ...)
/// with `md5` 0, MCollective's value for "not hashed", as for a directory.
pub const MAX_HASH_BYTES: u64 = 64 << 20;

/// How long reading and hashing one file may take: 2 s, from the start of
/// the digest. Beyond it the digest is not reported and the call fails with
/// "took longer than 2 s".
pub const HASH_TIME_BUDGET: Duration = Duration::from_secs(2);

/// Bytes read at a time while hashing; the time budget is checked after each.
const HASH_CHUNK: usize = 64 << 10;

/// Filesystems (`statfs` `f_type`) whose files are described but never
/// opened for reading: their "regular files" are kernel interfaces that
/// block (`/proc/kmsg`, tracefs `trace_pipe`), never end, or act on read.
const UNREAD_FILESYSTEMS: &[(u32, &str)] = &[
    (0x0000_9fa0, "proc"),
    (0x6265_6572, "sysfs"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x7363_6673, "securityfs"),
    (0x0027_e0eb, "cgroup"),
    (0x6367_7270, "cgroup2"),
    (0x6265_6570, "configfs"),
    (0x6165_676c, "pstore"),
    (0xde5e_81e4, "efivarfs"),
    (0xcafe_4a11, "bpf"),
    (0xf97c_ff8c, "selinuxfs"),
    (0x4341_5d53, "smackfs"),
    (0x4249_4e4d, "binfmt_misc"),
    (0x0000_1cd1, "devpts"),
    (0x6573_7543, "fusectl"),
];

/// Most entries of `/proc` that one `process` call looks at (every entry
/// counts, processes or not); past it the call fails instead of answering
/// from part of the table.
pub const MAX_PROCESS_ENTRIES: usize = 100_000;

/// Most bytes of `/proc/PID/comm` read (the kernel's names are at most 64).
/// A name this long or longer is not compared.
pub const MAX_COMM_BYTES: u64 = 256;

/// Most bytes of `/proc/PID/cmdline` read: `argv[0]` must end within them
/// (PATH_MAX) to be compared.
pub const MAX_CMDLINE_BYTES: u64 = 4096;

/// How long one `process` scan may take: 2 s; beyond it the call fails
/// with "took longer than 2 s".
pub const PROCESS_TIME_BUDGET: Duration = Duration::from_secs(2);

/// Longest `sysctl` name accepted; real ones are far shorter.
pub const MAX_SYSCTL_NAME: usize = 512;

/// Most bytes of a sysctl value read: 64 KiB (the kernel's own values fit
/// in a page); a longer value is cut.
pub const MAX_SYSCTL_VALUE: u64 = 64 << 10;

/// MCollective's `fstat` data plugin: what `path` is.
///
/// A missing path is not an error: `output` is "not present", `present` 0,
/// and the other properties keep MCollective's defaults (`type` "unknown",
/// `mode` "0000", numbers 0). As in MCollective a symlink is described
/// itself (`type` "symlink") but counts as present only when its target
/// exists. Times are UTC ("2026-11-25 17:56:57 +0000").
///
/// `md5` is the digest of a regular file's contents, read as a stream; it
/// is 0, as for a directory, for a file larger than [`MAX_HASH_BYTES`] or
/// on a kernel filesystem (`/proc`, `/sys`, ...), which are never opened.
/// Nothing but a regular file is ever opened, so a FIFO, device or socket is
/// only `stat`ed. Reading longer than [`HASH_TIME_BUDGET`] is an error.
pub fn fstat(path: &str) -> Result<Properties, DataError> {
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
        Err(source) => {
            return Err(DataError::Stat {
                path: path.to_string(),
                source,
            })
        }
    }
    let meta = std::fs::symlink_metadata(path).map_err(|source| DataError::Stat {
        path: path.to_string(),
        source,
    })?;
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
        // Hash what was just described: a path swapped since is an error.
        match digest_within::<Md5>(Path::new(path), &meta, HASH_BOUNDS) {
            Ok(Hashed::Hex(hex)) => {
                result.insert("md5".into(), json!(hex));
            }
            // `md5` keeps its "not hashed" 0.
            Ok(Hashed::Skipped(_)) => {}
            Err(source) => {
                return Err(DataError::Md5 {
                    path: path.to_string(),
                    source,
                })
            }
        }
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

/// What [`digest`] came to.
#[derive(Debug, PartialEq)]
pub(crate) enum Hashed {
    /// The contents' digest, lowercase hex.
    Hex(String),
    /// Deliberately not read, and why ("larger than 67108864 bytes").
    Skipped(String),
}

/// How much one digest may read, and for how long.
#[derive(Debug, Clone, Copy)]
struct HashBounds {
    max_bytes: u64,
    budget: Duration,
}

/// The digest of the regular file at `path`, within [`MAX_HASH_BYTES`] and
/// [`HASH_TIME_BUDGET`]. Anything but a regular file, a bigger one, or one
/// on a kernel filesystem is `Skipped` without being opened for reading.
pub(crate) fn digest<D: md5::Digest>(path: &Path) -> Result<Hashed, HashError> {
    let before = std::fs::symlink_metadata(path)?;
    digest_within::<D>(path, &before, HASH_BOUNDS)
}

/// The bounds of every digest.
const HASH_BOUNDS: HashBounds = HashBounds {
    max_bytes: MAX_HASH_BYTES,
    budget: HASH_TIME_BUDGET,
};

/// The digest of the file at `path` that `before` (an `lstat` of it)
/// describes. The file is checked three times, so that swapping what `path`
/// names between the checks (a FIFO, a symlink to `/dev/...` or into
/// `/proc`) cannot make it open or read anything but that regular file:
/// `before`; open the path with `O_PATH|O_NOFOLLOW` (which opens nothing
/// for I/O and runs no device's open) and `fstat`/`fstatfs` that; then
/// reopen that very inode through `/proc/self/fd` with `O_NONBLOCK`, and
/// `fstat` once more. Without `/proc` the path is opened again with
/// `O_NOFOLLOW|O_NONBLOCK` and the result checked the same way.
fn digest_within<D: md5::Digest>(
    path: &Path,
    before: &Metadata,
    bounds: HashBounds,
) -> Result<Hashed, HashError> {
    let started = Instant::now();
    let too_big = || Hashed::Skipped(format!("larger than {} bytes", bounds.max_bytes));
    if !before.file_type().is_file() {
        return Ok(Hashed::Skipped(format!("a {}", file_type(before))));
    }
    if before.size() > bounds.max_bytes {
        return Ok(too_big());
    }
    let handle = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(path)?;
    let meta = handle.metadata()?;
    check_same_file(before, &meta)?;
    if let Some(filesystem) = unread_filesystem(&handle)? {
        return Ok(Hashed::Skipped(format!(
            "on {filesystem}, whose files are not read"
        )));
    }
    if meta.size() > bounds.max_bytes {
        return Ok(too_big());
    }
    let read_flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    let reopened = OpenOptions::new()
        .read(true)
        .custom_flags(read_flags)
        .open(format!("/proc/self/fd/{}", handle.as_raw_fd()));
    let mut file = match reopened {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => OpenOptions::new()
            .read(true)
            .custom_flags(read_flags | libc::O_NOFOLLOW)
            .open(path)?,
        Err(e) => return Err(e.into()),
    };
    check_same_file(before, &file.metadata()?)?;
    let mut hasher = D::new();
    let mut buf = vec![0u8; HASH_CHUNK];
    let mut total: u64 = 0;
    loop {
        if started.elapsed() > bounds.budget {
            return Err(HashError::TooSlow {
                budget: bounds.budget,
            });
        }
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                if total > bounds.max_bytes {
                    // It grew while being read.
                    return Ok(too_big());
                }
                hasher.update(&buf[..n]);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Hashed::Hex(
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    ))
}

/// `now` is still the regular file `before` described.
fn check_same_file(before: &Metadata, now: &Metadata) -> Result<(), HashError> {
    if now.file_type().is_file() && now.dev() == before.dev() && now.ino() == before.ino() {
        Ok(())
    } else {
        Err(HashError::Changed)
    }
}

/// The name of the kernel filesystem (from [`UNREAD_FILESYSTEMS`]) that
/// `file` lies on, if it does.
fn unread_filesystem(file: &File) -> Result<Option<&'static str>, HashError> {
    let stats = rustix::fs::fstatfs(file).map_err(HashError::Statfs)?;
    // Magic numbers are 32 bits; `f_type`'s width differs between targets.
    let magic = stats.f_type as u32;
    Ok(UNREAD_FILESYSTEMS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, name)| *name))
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
/// `count` and the sorted `pids`. At most [`MAX_PROCESS_ENTRIES`] entries of
/// `/proc` are looked at, [`MAX_COMM_BYTES`] and [`MAX_CMDLINE_BYTES`] read
/// of each, within [`PROCESS_TIME_BUDGET`]; past either bound the call
/// fails rather than answer from part of the process table.
pub fn process(name: &str) -> Result<Properties, DataError> {
    process_in(
        Path::new("/proc"),
        name,
        ScanBounds {
            max_entries: MAX_PROCESS_ENTRIES,
            budget: PROCESS_TIME_BUDGET,
        },
    )
}

/// How much of `/proc` one `process` call may look at, and for how long.
#[derive(Debug, Clone, Copy)]
struct ScanBounds {
    max_entries: usize,
    budget: Duration,
}

fn process_in(proc_root: &Path, name: &str, bounds: ScanBounds) -> Result<Properties, DataError> {
    let started = Instant::now();
    let shown: String = name.chars().take(80).collect();
    if name.is_empty() {
        return Err(DataError::EmptyProcessName);
    }
    let entries = std::fs::read_dir(proc_root).map_err(|source| DataError::ProcessTable {
        name: shown.clone(),
        proc_root: proc_root.to_path_buf(),
        source,
    })?;
    let mut pids: Vec<u64> = Vec::new();
    for (seen, entry) in entries.enumerate() {
        if seen >= bounds.max_entries {
            return Err(DataError::TooManyProcesses {
                name: shown,
                proc_root: proc_root.to_path_buf(),
                max_entries: bounds.max_entries,
            });
        }
        if started.elapsed() > bounds.budget {
            return Err(DataError::ProcessScanTooSlow {
                name: shown,
                budget: bounds.budget,
            });
        }
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if process_matches(&entry.path(), name) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    let mut result = Map::new();
    result.insert("exists".into(), json!(!pids.is_empty()));
    result.insert("count".into(), json!(pids.len()));
    result.insert("pids".into(), json!(pids));
    Ok(result)
}

/// At most `cap` bytes of `path`, and whether the file went on past them.
fn read_capped(path: &Path, cap: u64) -> Option<(Vec<u8>, bool)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes).ok()?;
    let cut = bytes.len() as u64 > cap;
    bytes.truncate(cap as usize);
    Some((bytes, cut))
}

/// Unreadable or vanished processes simply do not match, nor do names cut
/// by the read bounds.
fn process_matches(dir: &Path, name: &str) -> bool {
    if let Some((comm, false)) = read_capped(&dir.join("comm"), MAX_COMM_BYTES) {
        if comm.strip_suffix(b"\n").unwrap_or(&comm) == name.as_bytes() {
            return true;
        }
    }
    let Some((cmdline, cut)) = read_capped(&dir.join("cmdline"), MAX_CMDLINE_BYTES) else {
        return false;
    };
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or(&[]);
    if cut && argv0.len() == cmdline.len() {
        return false; // argv[0] does not end within the bound
    }
    let base = argv0.rsplit(|&b| b == b'/').next().unwrap_or(argv0);
    !base.is_empty() && base == name.as_bytes()
}

/// The properties of MCollective's `puppet` data plugin (the puppet
/// agent's `puppet_data.rb`), which the puppet agent answers from its
/// `status`: `puppet().enabled=false`, `puppet().since_lastrun>3600`. The
/// filter language's table ([`muster_protocol::DATA_PLUGINS`]) is the list.
pub fn puppet_properties() -> &'static [&'static str] {
    muster_protocol::DATA_PLUGINS
        .iter()
        .find(|(plugin, _)| *plugin == "puppet")
        .map_or(&[], |(_, properties)| *properties)
}

/// `puppet()`'s answer from the puppet agent's `status` output: the
/// [`puppet_properties`] of it. Like MCollective's, the plugin takes no
/// argument (`puppet()`).
pub(crate) fn puppet(argument: &str, status: &Value) -> Result<Properties, DataError> {
    if !argument.trim().is_empty() {
        return Err(DataError::NoArgument {
            plugin: "puppet",
            argument: argument.chars().take(80).collect(),
        });
    }
    Ok(puppet_properties()
        .iter()
        .filter_map(|name| Some((name.to_string(), status.get(*name)?.clone())))
        .collect())
}

/// A kernel parameter, `net.ipv4.ip_forward` read from
/// `/proc/sys/net/ipv4/ip_forward`. Answers `value`: the text trimmed, runs
/// of blanks between several values made single spaces. The name is dotted
/// words without `/`, so it cannot name anything outside `/proc/sys`; only
/// a regular file is read (opened `O_NOFOLLOW|O_NONBLOCK`), at most
/// [`MAX_SYSCTL_VALUE`] bytes of it.
pub fn sysctl(name: &str) -> Result<Properties, DataError> {
    sysctl_in(Path::new("/proc/sys"), name)
}

fn sysctl_in(root: &Path, name: &str) -> Result<Properties, DataError> {
    let shown: String = name.chars().take(80).collect();
    let bad = |reason: &'static str| {
        Err(DataError::NoSysctl {
            name: shown.clone(),
            reason,
        })
    };
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
    // Every part is a plain, non-empty file name without '/' (nor '.', the
    // separator), so the path stays below `root`.
    let path = name
        .split('.')
        .fold(root.to_path_buf(), |p, part| p.join(part));
    let read_error = |source| DataError::SysctlRead {
        name: shown.clone(),
        path: path.clone(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(&path);
    let file = match file {
        Ok(file) => file,
        Err(e) if is_missing(&e) => return bad("no such sysctl"),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return bad("no such sysctl (that is a symlink)")
        }
        Err(source) => return Err(read_error(source)),
    };
    let kind = file.metadata().map_err(read_error)?.file_type();
    if kind.is_dir() {
        return bad("no such sysctl (that is a group of them)");
    }
    if !kind.is_file() {
        return bad("no such sysctl (that is not a regular file)");
    }
    let mut text = Vec::new();
    if let Err(source) = file.take(MAX_SYSCTL_VALUE).read_to_end(&mut text) {
        return Err(read_error(source));
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

    const SCAN: ScanBounds = ScanBounds {
        max_entries: MAX_PROCESS_ENTRIES,
        budget: PROCESS_TIME_BUDGET,
    };

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
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
        assert!(
            matches!(&err, DataError::Md5 { source: HashError::Io(e), .. }
            if e.kind() == ErrorKind::PermissionDenied)
        );
        let err = err.to_string();
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
        let r = process_in(dir.path(), "redis-server", SCAN).expect("process");
        assert_eq!(r["pids"], json!([9, 10, 200]));
        assert_eq!(r["count"], 3);
        assert_eq!(
            process_in(dir.path(), "kworker/0:1", SCAN).expect("process")["pids"],
            json!([30])
        );
        assert!(process_in(&dir.path().join("missing"), "x", SCAN).is_err());
    }

    #[test]
    fn sysctl_reads_proc_sys() {
        assert_eq!(sysctl("kernel.ostype").expect("sysctl")["value"], "Linux");
        let err = sysctl("kernel.no_such_key").unwrap_err().to_string();
        assert!(err.contains("no such sysctl"), "{err}");
        let err = sysctl("kernel").unwrap_err().to_string();
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
        let v = |n: &str| {
            sysctl_in(dir.path(), n)
                .map(|r| r["value"].clone())
                .map_err(|e| e.to_string())
        };
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
            let err = sysctl(name).unwrap_err().to_string();
            assert!(
                err.starts_with("sysctl('") && err.len() < 300,
                "{name:.40}: {err}"
            );
        }
    }

    fn mkfifo(path: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .expect("mkfifo");
    }

    #[test]
    fn digest_bounds_are_exact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ten");
        std::fs::write(&path, "0123456789").expect("write");
        let bounds = |max_bytes| HashBounds {
            max_bytes,
            budget: HASH_TIME_BUDGET,
        };
        let before = std::fs::symlink_metadata(&path).expect("lstat");
        assert_eq!(
            digest_within::<Md5>(&path, &before, bounds(10)).expect("digest"),
            Hashed::Hex("781e5e245d69b566979b86e28d23f2c7".into())
        );
        assert_eq!(
            digest_within::<Md5>(&path, &before, bounds(9)).expect("digest"),
            Hashed::Skipped("larger than 9 bytes".into())
        );
        let slow = HashBounds {
            max_bytes: 10,
            budget: Duration::ZERO,
        };
        let err = digest_within::<Md5>(&path, &before, slow).unwrap_err();
        assert!(matches!(err, HashError::TooSlow { .. }), "{err}");
        assert!(err.to_string().contains("took longer than 0 s"), "{err}");
    }

    #[test]
    fn digests_skip_what_fstat_does_not_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let skipped = |path: &Path| match digest::<sha2::Sha256>(path).expect("digest") {
            Hashed::Skipped(why) => why,
            Hashed::Hex(hex) => panic!("{} hashed: {hex}", path.display()),
        };
        assert!(skipped(&fifo).contains("a fifo"));
        assert!(skipped(Path::new("/proc/cpuinfo")).contains("on proc"));
        assert!(skipped(Path::new("/dev/zero")).contains("a chardev"));
        let file = dir.path().join("file");
        std::fs::write(&file, "hello\n").expect("write");
        match digest::<sha2::Sha256>(&file).expect("sha256") {
            Hashed::Hex(hex) => assert_eq!(
                hex,
                "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
            ),
            Hashed::Skipped(why) => panic!("skipped: {why}"),
        }
    }

    #[test]
    fn a_swapped_file_is_not_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("file");
        std::fs::write(&file, "x").expect("write");
        let before = std::fs::symlink_metadata(&file).expect("lstat");
        std::fs::write(dir.path().join("other"), "y").expect("write");
        let other = std::fs::metadata(dir.path().join("other")).expect("stat");
        assert!(matches!(
            check_same_file(&before, &other),
            Err(HashError::Changed)
        ));
        assert!(check_same_file(&before, &std::fs::metadata(dir.path()).expect("stat")).is_err());
        assert!(check_same_file(&before, &std::fs::metadata(&file).expect("stat")).is_ok());
    }

    #[test]
    fn unread_filesystems_match_the_kernel() {
        let names: Vec<(u32, &str)> = [
            (libc::PROC_SUPER_MAGIC, "proc"),
            (libc::SYSFS_MAGIC, "sysfs"),
            (libc::DEBUGFS_MAGIC, "debugfs"),
            (libc::TRACEFS_MAGIC, "tracefs"),
            (libc::SECURITYFS_MAGIC, "securityfs"),
            (libc::CGROUP_SUPER_MAGIC, "cgroup"),
            (libc::CGROUP2_SUPER_MAGIC, "cgroup2"),
            (libc::BPF_FS_MAGIC, "bpf"),
            (libc::SELINUX_MAGIC, "selinuxfs"),
            (libc::DEVPTS_SUPER_MAGIC, "devpts"),
        ]
        .into_iter()
        .map(|(magic, name)| (magic as u32, name))
        .collect();
        for (magic, name) in names {
            assert!(UNREAD_FILESYSTEMS.contains(&(magic, name)), "{name}");
        }
        let proc_file = File::open("/proc/self/status").expect("open");
        assert_eq!(
            unread_filesystem(&proc_file).expect("fstatfs"),
            Some("proc")
        );
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f"), "x").expect("write");
        let plain = File::open(dir.path().join("f")).expect("open");
        assert_eq!(unread_filesystem(&plain).expect("fstatfs"), None);
    }

    #[test]
    fn process_scan_bounds() {
        let dir = tempfile::tempdir().expect("tempdir");
        for pid in 1..=5 {
            let p = dir.path().join(pid.to_string());
            std::fs::create_dir(&p).expect("mkdir");
            std::fs::write(p.join("comm"), "daemon\n").expect("comm");
        }
        let few = ScanBounds {
            max_entries: 4,
            budget: PROCESS_TIME_BUDGET,
        };
        let err = process_in(dir.path(), "daemon", few).unwrap_err();
        assert!(
            matches!(&err, DataError::TooManyProcesses { max_entries: 4, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("more than 4 entries"), "{err}");
        let five = ScanBounds {
            max_entries: 5,
            ..few
        };
        assert_eq!(
            process_in(dir.path(), "daemon", five).expect("process")["count"],
            5
        );
        let slow = ScanBounds {
            budget: Duration::ZERO,
            ..five
        };
        let err = process_in(dir.path(), "daemon", slow)
            .unwrap_err()
            .to_string();
        assert!(err.contains("took longer than 0 s"), "{err}");
    }

    #[test]
    fn process_names_cut_by_the_bounds_do_not_match() {
        let dir = tempfile::tempdir().expect("tempdir");
        let long = "x".repeat(MAX_CMDLINE_BYTES as usize);
        let add = |pid: &str, comm: &[u8], cmdline: &[u8]| {
            let p = dir.path().join(pid);
            std::fs::create_dir(&p).expect("mkdir");
            std::fs::write(p.join("comm"), comm).expect("comm");
            std::fs::write(p.join("cmdline"), cmdline).expect("cmdline");
        };
        // argv[0] goes on past the bound: its first MAX_CMDLINE_BYTES are
        // not compared (they would match `long`).
        add("1", b"sh\n", format!("{long}x").as_bytes());
        // One byte shorter ends within the bound.
        add("2", b"sh\n", format!("/{}\0-c", &long[2..]).as_bytes());
        // A comm as long as the bound is not compared either.
        add("3", &vec![b'c'; MAX_COMM_BYTES as usize + 1], b"");
        assert_eq!(
            process_in(dir.path(), &long, SCAN).expect("process")["pids"],
            json!([])
        );
        assert_eq!(
            process_in(dir.path(), &long[2..], SCAN).expect("process")["pids"],
            json!([2])
        );
        let comm = "c".repeat(MAX_COMM_BYTES as usize);
        assert_eq!(
            process_in(dir.path(), &comm, SCAN).expect("process")["pids"],
            json!([])
        );
    }

    #[test]
    fn sysctl_reads_only_regular_files_below_its_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("sys");
        std::fs::create_dir_all(root.join("kernel")).expect("mkdir");
        std::fs::write(dir.path().join("shadow"), "root:secret\n").expect("write");
        symlink(dir.path().join("shadow"), root.join("kernel/link")).expect("symlink");
        mkfifo(&root.join("kernel/fifo"));
        let (tx, rx) = std::sync::mpsc::channel();
        let root2 = root.clone();
        std::thread::spawn(move || {
            let _ = tx.send((
                sysctl_in(&root2, "kernel.link"),
                sysctl_in(&root2, "kernel.fifo"),
                sysctl_in(&root2, "kernel"),
            ));
        });
        let (link, fifo, group) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("sysctl blocked");
        let text = |r: Result<Properties, DataError>| r.map_err(|e| e.to_string());
        assert!(text(link).is_err_and(|e| e.contains("symlink") && !e.contains("secret")));
        assert!(text(fifo).is_err_and(|e| e.contains("not a regular file")));
        assert!(text(group).is_err_and(|e| e.contains("group of them")));
        std::fs::write(
            root.join("kernel/big"),
            "1 ".repeat(MAX_SYSCTL_VALUE as usize),
        )
        .expect("write");
        let value = sysctl_in(&root, "kernel.big").expect("sysctl")["value"].clone();
        assert_eq!(
            value.as_str().map(str::len),
            Some(MAX_SYSCTL_VALUE as usize - 1)
        );
    }
}
