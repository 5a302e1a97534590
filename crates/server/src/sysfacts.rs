//! Built-in facts, gathered natively from `/proc`, `/sys` and `/etc`.
//!
//! [`gather`] answers what a node is — operating system, kernel, processors,
//! memory, uptime, network interfaces, timezone, virtualisation — in a layout
//! close to facter 4's structured facts (`os.family`, `networking.ip`, ...)
//! plus the flat legacy names MCollective users filter on (`osfamily`,
//! `ipaddress_eth0`, ...), so `-F os.family=Debian` works on a node that has
//! no facts file and no Ruby.
//!
//! Every source is optional: a file that is missing or unreadable, or text
//! that does not parse, leaves its keys out. Gathering never fails and never
//! panics. The parsers are pure functions over text, tested on samples from
//! real systems.
//!
//! [`FacterSource`] is the alternative for `factsource = facter`: it runs the
//! real `facter -j` and caches its answer.
//!
//! ```
//! let facts = muster_server::sysfacts::gather("node01");
//! assert_eq!(facts["identity"], "node01");
//! assert_eq!(facts["kernel"], "Linux");
//! ```
#![allow(unsafe_code)] // TEMPORARY: the libc calls here move to rustix

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

/// Collects the built-in facts of this machine, with `identity` as given.
///
/// Keys whose source is missing are left out; this never fails.
pub fn gather(identity: &str) -> Value {
    let mut facts = Map::new();
    facts.insert("identity".into(), json!(identity));
    let names = host_names();
    os_facts(&mut facts);
    kernel_facts(&mut facts);
    processor_facts(&mut facts);
    memory_facts(&mut facts);
    uptime_facts(&mut facts);
    networking_facts(&mut facts, &names);
    facts.insert("timezone".into(), json!(timezone()));
    virtual_facts(&mut facts);
    if let Ok(path) = std::env::var("PATH") {
        facts.insert("path".into(), json!(path));
    }
    facts.insert("muster_version".into(), json!(env!("CARGO_PKG_VERSION")));
    Value::Object(facts)
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

// ---------------------------------------------------------------- names

/// The short host name, the fully qualified name and the domain, if known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNames {
    pub hostname: String,
    pub fqdn: String,
    pub domain: Option<String>,
}

fn host_names() -> HostNames {
    let kernel = crate::hostname();
    let etc = read_trimmed("/etc/hostname");
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let nis = read_trimmed("/proc/sys/kernel/domainname");
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    resolve_host_names(&kernel, etc.as_deref(), &hosts, nis.as_deref(), &resolv)
}

/// Works out the domain as facter does, first source that knows wins: a
/// dotted kernel host name or `/etc/hostname`, the canonical name `/etc/hosts`
/// gives the host, the kernel's domain name, `domain` in `/etc/resolv.conf`.
pub fn resolve_host_names(
    kernel: &str,
    etc_hostname: Option<&str>,
    hosts: &str,
    domainname: Option<&str>,
    resolv_conf: &str,
) -> HostNames {
    let kernel = kernel.trim();
    let (short, kernel_domain) = split_name(kernel);
    let domain = kernel_domain
        .or_else(|| {
            etc_hostname
                .map(str::trim)
                .and_then(|n| split_name(n).1.filter(|_| split_name(n).0 == short))
        })
        .or_else(|| parse_hosts_domain(hosts, &short))
        .or_else(|| {
            domainname
                .map(str::trim)
                .filter(|d| !d.is_empty() && *d != "(none)")
                .map(str::to_string)
        })
        .or_else(|| parse_resolv_domain(resolv_conf));
    let fqdn = match &domain {
        Some(d) => format!("{short}.{d}"),
        None => short.clone(),
    };
    HostNames {
        hostname: short,
        fqdn,
        domain,
    }
}

fn split_name(name: &str) -> (String, Option<String>) {
    match name.split_once('.') {
        Some((short, domain)) if !short.is_empty() && !domain.is_empty() => (
            short.to_string(),
            Some(domain.trim_end_matches('.').to_string()),
        ),
        _ => (name.trim_matches('.').to_string(), None),
    }
}

/// The domain of `short`'s canonical name in `/etc/hosts` text, when one of
/// its lines names the host `short.some.domain`.
pub fn parse_hosts_domain(hosts: &str, short: &str) -> Option<String> {
    if short.is_empty() {
        return None;
    }
    let prefix = format!("{short}.");
    hosts
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .filter(|line| {
            line.split_whitespace()
                .skip(1)
                .any(|n| n == short || n.starts_with(&prefix))
        })
        .flat_map(|line| line.split_whitespace().skip(1))
        .find_map(|name| name.strip_prefix(&prefix).filter(|d| !d.is_empty()))
        .map(|d| d.trim_end_matches('.').to_string())
}

/// The `domain` line of `/etc/resolv.conf` text.
pub fn parse_resolv_domain(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("domain"))
            .then(|| words.next())
            .flatten()
            .map(str::to_string)
    })
}

// ------------------------------------------------------------------- os

/// `KEY=value` pairs of an os-release file, quotes removed.
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let (key, value) = line.split_once('=')?;
            Some((key.trim().to_string(), unquote(value.trim())))
        })
        .collect()
}

fn unquote(value: &str) -> String {
    let bytes = value.as_bytes();
    if bytes.len() >= 2
        && (bytes[0] == b'"' || bytes[0] == b'\'')
        && bytes[bytes.len() - 1] == bytes[0]
    {
        let inner = &value[1..value.len() - 1];
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' if bytes[0] == b'"' => out.extend(chars.next()),
                c => out.push(c),
            }
        }
        out
    } else {
        value.to_string()
    }
}

/// Facter's name for the distribution with os-release `ID` `id`.
pub fn os_name(id: &str) -> String {
    let known = match id {
        "debian" => "Debian",
        "ubuntu" => "Ubuntu",
        "linuxmint" => "LinuxMint",
        "raspbian" => "Raspbian",
        "devuan" => "Devuan",
        "kali" => "Kali",
        "rhel" => "RedHat",
        "centos" => "CentOS",
        "rocky" => "Rocky",
        "almalinux" => "AlmaLinux",
        "fedora" => "Fedora",
        "ol" => "OracleLinux",
        "amzn" => "Amazon",
        "scientific" => "Scientific",
        "cloudlinux" => "CloudLinux",
        "sles" | "sled" => "SLES",
        "opensuse" | "opensuse-leap" | "opensuse-tumbleweed" => "OpenSuSE",
        "arch" => "Archlinux",
        "manjaro" => "ManjaroLinux",
        "gentoo" => "Gentoo",
        "alpine" => "Alpine",
        "photon" => "PhotonOS",
        "mariner" => "Mariner",
        "azurelinux" => "AzureLinux",
        "void" => "Void",
        "nixos" => "NixOS",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    let mut chars = id.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => "Linux".to_string(),
    }
}

fn family_of(id: &str) -> Option<&'static str> {
    Some(match id {
        "debian" | "ubuntu" | "linuxmint" | "raspbian" | "devuan" | "kali" | "pop"
        | "elementary" => "Debian",
        "rhel" | "centos" | "rocky" | "almalinux" | "fedora" | "ol" | "amzn" | "scientific"
        | "cloudlinux" | "virtuozzo" | "eurolinux" | "mariner" | "azurelinux" => "RedHat",
        "suse" | "sles" | "sled" | "opensuse" | "opensuse-leap" | "opensuse-tumbleweed" => "Suse",
        "arch" | "manjaro" | "endeavouros" => "Archlinux",
        "gentoo" => "Gentoo",
        "alpine" => "Alpine",
        _ => return None,
    })
}

/// The os family as facter names it: from `ID`, else from the first
/// `ID_LIKE` entry that names a known family, else the distribution's name.
pub fn os_family(id: &str, id_like: &str) -> String {
    family_of(id)
        .or_else(|| id_like.split_whitespace().find_map(family_of))
        .map(str::to_string)
        .unwrap_or_else(|| os_name(id))
}

/// A release version split as facter reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub full: String,
    pub major: String,
    pub minor: Option<String>,
}

/// Splits `full` ("12.8", "9.5", "24.04") into major and minor; Ubuntu's
/// major release is the whole "24.04", as facter has it.
pub fn parse_release(full: &str, os_name: &str) -> Option<Release> {
    let full = full.trim();
    if full.is_empty() {
        return None;
    }
    let mut parts = full.split('.');
    let first = parts.next().unwrap_or(full).to_string();
    let second = parts.next().filter(|s| !s.is_empty()).map(str::to_string);
    if os_name == "Ubuntu" {
        return Some(Release {
            full: full.to_string(),
            major: full.to_string(),
            minor: None,
        });
    }
    Some(Release {
        full: full.to_string(),
        major: first,
        minor: second,
    })
}

/// The structured `os` fact from an os-release text, the contents of
/// `/etc/debian_version` when present, and the machine hardware name.
pub fn os_from(
    os_release: &str,
    debian_version: Option<&str>,
    hardware: Option<&str>,
) -> Map<String, Value> {
    let fields = parse_os_release(os_release);
    let get = |key: &str| {
        fields
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let id = get("ID").unwrap_or("linux").to_ascii_lowercase();
    let name = os_name(&id);
    let family = os_family(&id, &get("ID_LIKE").unwrap_or("").to_ascii_lowercase());
    let mut os = Map::new();
    os.insert("name".into(), json!(name));
    os.insert("family".into(), json!(family));
    // Debian's point release ("12.8") is only in /etc/debian_version.
    let debian_full = debian_version
        .map(str::trim)
        .filter(|v| id == "debian" && v.starts_with(|c: char| c.is_ascii_digit()));
    if let Some(release) = debian_full
        .or_else(|| get("VERSION_ID"))
        .and_then(|v| parse_release(v, &name))
    {
        let mut r = Map::new();
        r.insert("full".into(), json!(release.full));
        r.insert("major".into(), json!(release.major));
        if let Some(minor) = release.minor {
            r.insert("minor".into(), json!(minor));
        }
        os.insert("release".into(), Value::Object(r));
    }
    let mut distro = Map::new();
    if let Some(codename) = get("VERSION_CODENAME") {
        distro.insert("codename".into(), json!(codename));
    }
    if let Some(description) = get("PRETTY_NAME") {
        distro.insert("description".into(), json!(description));
    }
    if !distro.is_empty() {
        os.insert("distro".into(), Value::Object(distro));
    }
    if let Some(hw) = hardware.filter(|h| !h.is_empty()) {
        os.insert("hardware".into(), json!(hw));
        let arch = if family == "Debian" {
            debian_arch(hw)
        } else {
            hw.to_string()
        };
        os.insert("architecture".into(), json!(arch));
    }
    os
}

fn debian_arch(hardware: &str) -> String {
    match hardware {
        "x86_64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "i386" | "i486" | "i586" | "i686" => "i386",
        "armv7l" | "armv6l" => "armhf",
        "ppc64le" => "ppc64el",
        "riscv64" => "riscv64",
        other => other,
    }
    .to_string()
}

fn machine_hardware() -> Option<String> {
    read_trimmed("/proc/sys/kernel/arch").or_else(|| {
        // SAFETY: `uname` only writes into the zeroed struct we own; its
        // fields are NUL-terminated C strings on success.
        let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
        if unsafe { libc::uname(&mut uts) } != 0 {
            return None;
        }
        let bytes: Vec<u8> = uts
            .machine
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8(bytes).ok().filter(|s| !s.is_empty())
    })
}

fn os_facts(facts: &mut Map<String, Value>) {
    let Some(os_release) =
        read_trimmed("/etc/os-release").or_else(|| read_trimmed("/usr/lib/os-release"))
    else {
        return;
    };
    let debian_version = read_trimmed("/etc/debian_version");
    let hardware = machine_hardware();
    let os = os_from(&os_release, debian_version.as_deref(), hardware.as_deref());
    let legacy = [
        ("osfamily", os.get("family").unwrap_or(&Value::Null)),
        ("operatingsystem", os.get("name").unwrap_or(&Value::Null)),
        (
            "operatingsystemrelease",
            os.get("release").map_or(&Value::Null, |r| &r["full"]),
        ),
        (
            "operatingsystemmajrelease",
            os.get("release").map_or(&Value::Null, |r| &r["major"]),
        ),
        (
            "architecture",
            os.get("architecture").unwrap_or(&Value::Null),
        ),
        ("hardwaremodel", os.get("hardware").unwrap_or(&Value::Null)),
    ];
    for (key, value) in legacy {
        if !value.is_null() {
            facts.insert(key.into(), value.clone());
        }
    }
    facts.insert("os".into(), Value::Object(os));
}

// --------------------------------------------------------------- kernel

/// `kernelversion` and `kernelmajversion` from a kernel release such as
/// "6.1.0-28-amd64": "6.1.0" and "6.1".
pub fn kernel_versions(release: &str) -> (String, String) {
    let version = release
        .split(['-', '+'])
        .next()
        .unwrap_or(release)
        .to_string();
    let major = version.split('.').take(2).collect::<Vec<_>>().join(".");
    (version, major)
}

fn kernel_facts(facts: &mut Map<String, Value>) {
    let kernel = read_trimmed("/proc/sys/kernel/ostype").unwrap_or_else(|| "Linux".to_string());
    facts.insert("kernel".into(), json!(kernel));
    if let Some(release) = read_trimmed("/proc/sys/kernel/osrelease") {
        let (version, major) = kernel_versions(&release);
        facts.insert("kernelrelease".into(), json!(release));
        facts.insert("kernelversion".into(), json!(version));
        facts.insert("kernelmajversion".into(), json!(major));
    }
}

// ----------------------------------------------------------- processors

/// What `/proc/cpuinfo` says about the processors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuInfo {
    /// Logical processors.
    pub count: usize,
    /// One model name per logical processor that has one.
    pub models: Vec<String>,
    /// Distinct `physical id`s (sockets); 0 when the file does not say.
    pub physical_count: usize,
    /// The `hypervisor` flag is set: running under a hypervisor.
    pub hypervisor: bool,
}

/// Parses `/proc/cpuinfo` text (x86 and ARM layouts).
pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut info = CpuInfo::default();
    let mut physical = BTreeSet::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" if value.parse::<u64>().is_ok() => info.count += 1,
            "model name" | "Processor" | "cpu model" if !value.is_empty() => {
                info.models.push(value.to_string())
            }
            "physical id" => {
                physical.insert(value.to_string());
            }
            "flags" if value.split_whitespace().any(|f| f == "hypervisor") => {
                info.hypervisor = true
            }
            _ => {}
        }
    }
    info.physical_count = physical.len();
    info
}

fn processor_facts(facts: &mut Map<String, Value>) {
    let info = parse_cpuinfo(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default());
    let count = if info.count > 0 {
        info.count
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    };
    if count == 0 {
        return;
    }
    let mut processors = Map::new();
    processors.insert("count".into(), json!(count));
    processors.insert("models".into(), json!(info.models));
    if info.physical_count > 0 {
        processors.insert("physicalcount".into(), json!(info.physical_count));
        facts.insert("physicalprocessorcount".into(), json!(info.physical_count));
    }
    facts.insert("processors".into(), Value::Object(processors));
    facts.insert("processorcount".into(), json!(count));
}

// --------------------------------------------------------------- memory

/// Total and available memory in bytes from `/proc/meminfo` text.
/// Available is `MemAvailable`, or free + buffers + cache on old kernels.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let mut fields = BTreeMap::new();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let Some(Ok(n)) = words.next().map(str::parse::<u64>) else {
            continue;
        };
        let factor = if words.next() == Some("kB") { 1024 } else { 1 };
        fields.insert(key.trim(), n.saturating_mul(factor));
    }
    let total = *fields.get("MemTotal")?;
    let available = fields.get("MemAvailable").copied().unwrap_or_else(|| {
        ["MemFree", "Buffers", "Cached"]
            .iter()
            .filter_map(|k| fields.get(k))
            .fold(0u64, |a, b| a.saturating_add(*b))
    });
    Some((total, available.min(total)))
}

/// Bytes as facter writes them: "1023 bytes", "1.50 KiB", "23.47 GiB"
/// (two decimals, truncated).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let exp = ((63 - bytes.leading_zeros()) / 10) as usize;
    let value = bytes as f64 / 1024f64.powi(exp as i32);
    let truncated = (value * 100.0).floor() / 100.0;
    format!("{truncated:.2} {}", UNITS[exp.min(UNITS.len() - 1)])
}

fn mebibytes(bytes: u64) -> f64 {
    (bytes as f64 / 1048576.0 * 100.0).round() / 100.0
}

fn memory_facts(facts: &mut Map<String, Value>) {
    let Some((total, available)) = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| parse_meminfo(&t))
    else {
        return;
    };
    facts.insert(
        "memory".into(),
        json!({"system": {
            "total_bytes": total,
            "available_bytes": available,
            "used_bytes": total - available,
            "total": human_bytes(total),
            "available": human_bytes(available),
            "used": human_bytes(total - available),
        }}),
    );
    facts.insert("memorysize".into(), json!(human_bytes(total)));
    facts.insert("memoryfree".into(), json!(human_bytes(available)));
    facts.insert("memorysize_mb".into(), json!(mebibytes(total)));
    facts.insert("memoryfree_mb".into(), json!(mebibytes(available)));
}

// --------------------------------------------------------------- uptime

/// Whole seconds since boot from `/proc/uptime` text ("350735.47 234388.90").
pub fn parse_uptime(text: &str) -> Option<u64> {
    let first = text.split_whitespace().next()?;
    let seconds: f64 = first.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then_some(seconds as u64)
}

/// Uptime as facter words it: "3 days", "1 day", "1:02 hours".
pub fn human_uptime(seconds: u64) -> String {
    let days = seconds / 86_400;
    match days {
        0 => format!("{}:{:02} hours", seconds / 3600, seconds / 60 % 60),
        1 => "1 day".to_string(),
        n => format!("{n} days"),
    }
}

fn uptime_facts(facts: &mut Map<String, Value>) {
    let Some(seconds) = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| parse_uptime(&t))
    else {
        return;
    };
    let human = human_uptime(seconds);
    facts.insert(
        "system_uptime".into(),
        json!({"seconds": seconds, "hours": seconds / 3600, "days": seconds / 86_400, "uptime": human}),
    );
    facts.insert("uptime_seconds".into(), json!(seconds));
    facts.insert("uptime_hours".into(), json!(seconds / 3600));
    facts.insert("uptime_days".into(), json!(seconds / 86_400));
    facts.insert("uptime".into(), json!(human));
}

// ----------------------------------------------------------- networking

/// The interface of the default route in `/proc/net/route` text: the
/// destination-0, mask-0 route that is up, lowest metric first.
pub fn parse_default_route(text: &str) -> Option<String> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let flags = u32::from_str_radix(f[3], 16).ok()?;
            let metric: u64 = f[6].parse().ok()?;
            let default = f[1] == "00000000" && f[7] == "00000000" && flags & 1 == 1;
            default.then(|| (metric, f[0].to_string()))
        })
        .min_by_key(|(metric, _)| *metric)
        .map(|(_, name)| name)
}

/// One address on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub interface: String,
    pub address: IpAddr,
    pub netmask: Option<IpAddr>,
}

impl Binding {
    fn network(&self) -> Option<IpAddr> {
        match (self.address, self.netmask?) {
            (IpAddr::V4(a), IpAddr::V4(m)) => {
                Some(IpAddr::V4(Ipv4Addr::from(u32::from(a) & u32::from(m))))
            }
            (IpAddr::V6(a), IpAddr::V6(m)) => {
                Some(IpAddr::V6(Ipv6Addr::from(u128::from(a) & u128::from(m))))
            }
            _ => None,
        }
    }

    fn to_json(&self) -> Value {
        let mut b = Map::new();
        b.insert("address".into(), json!(self.address.to_string()));
        if let Some(mask) = self.netmask {
            b.insert("netmask".into(), json!(mask.to_string()));
        }
        if let Some(network) = self.network() {
            b.insert("network".into(), json!(network.to_string()));
        }
        Value::Object(b)
    }
}

/// Reads one socket address that `getifaddrs` handed out.
///
/// # Safety
/// `addr` is null or points to a valid `sockaddr` whose family tells its
/// real type, as `getifaddrs` guarantees.
unsafe fn sockaddr_ip(addr: *const libc::sockaddr) -> Option<IpAddr> {
    if addr.is_null() {
        return None;
    }
    match i32::from((*addr).sa_family) {
        libc::AF_INET => {
            let sin = std::ptr::read_unaligned(addr as *const libc::sockaddr_in);
            // s_addr is in network byte order, i.e. its memory is the octets.
            Some(IpAddr::V4(Ipv4Addr::from(
                sin.sin_addr.s_addr.to_ne_bytes(),
            )))
        }
        libc::AF_INET6 => {
            let sin6 = std::ptr::read_unaligned(addr as *const libc::sockaddr_in6);
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

/// All IPv4 and IPv6 addresses of all interfaces, from `getifaddrs(3)`.
/// Alias labels ("eth0:1") count as their interface.
fn interface_bindings() -> Vec<Binding> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: on success getifaddrs gives us a list we own until freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list above, which is not yet freed;
        // its name is a NUL-terminated string and its addresses are valid
        // sockaddrs or null.
        let (name, address, netmask, next) = unsafe {
            let ifa = &*cur;
            let name = (!ifa.ifa_name.is_null()).then(|| {
                std::ffi::CStr::from_ptr(ifa.ifa_name)
                    .to_string_lossy()
                    .into_owned()
            });
            (
                name,
                sockaddr_ip(ifa.ifa_addr),
                sockaddr_ip(ifa.ifa_netmask),
                ifa.ifa_next,
            )
        };
        if let (Some(name), Some(address)) = (name, address) {
            let interface = name.split(':').next().unwrap_or(&name).to_string();
            out.push(Binding {
                interface,
                address,
                netmask,
            });
        }
        cur = next;
    }
    // SAFETY: `head` came from getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// Facter's legacy fact names allow only letters, digits and `_`.
fn legacy_name(interface: &str) -> String {
    interface
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn first_ip<'a>(bindings: &[&'a Binding], v4: bool) -> Option<&'a Binding> {
    let wanted: Vec<_> = bindings
        .iter()
        .copied()
        .filter(|b| b.address.is_ipv4() == v4)
        .collect();
    // Prefer a global IPv6 address to a link-local one (fe80::/10).
    wanted
        .iter()
        .copied()
        .find(|b| match b.address {
            IpAddr::V6(a) => a.segments()[0] & 0xffc0 != 0xfe80,
            IpAddr::V4(_) => true,
        })
        .or_else(|| wanted.first().copied())
}

/// The `networking` fact and its legacy flat names, from the addresses and
/// each interface's MAC address and MTU.
pub fn networking_from(
    names: &HostNames,
    bindings: &[Binding],
    links: &BTreeMap<String, (Option<String>, Option<u64>)>,
    default_route: Option<&str>,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut legacy = Map::new();
    let mut all: BTreeSet<String> = links.keys().cloned().collect();
    all.extend(bindings.iter().map(|b| b.interface.clone()));
    let mut interfaces = Map::new();
    let mut primary_ip: BTreeMap<String, String> = BTreeMap::new();
    for name in &all {
        let mine: Vec<&Binding> = bindings.iter().filter(|b| &b.interface == name).collect();
        let mut iface = Map::new();
        let lname = legacy_name(name);
        for (v4, suffix) in [(true, ""), (false, "6")] {
            let Some(first) = first_ip(&mine, v4) else {
                continue;
            };
            iface.insert(format!("ip{suffix}"), json!(first.address.to_string()));
            legacy.insert(
                format!("ipaddress{suffix}_{lname}"),
                json!(first.address.to_string()),
            );
            if let Some(mask) = first.netmask {
                iface.insert(format!("netmask{suffix}"), json!(mask.to_string()));
                legacy.insert(format!("netmask{suffix}_{lname}"), json!(mask.to_string()));
            }
            if let Some(network) = first.network() {
                iface.insert(format!("network{suffix}"), json!(network.to_string()));
                legacy.insert(
                    format!("network{suffix}_{lname}"),
                    json!(network.to_string()),
                );
            }
            let list: Vec<Value> = mine
                .iter()
                .filter(|b| b.address.is_ipv4() == v4)
                .map(|b| b.to_json())
                .collect();
            iface.insert(format!("bindings{suffix}"), Value::Array(list));
            if v4 {
                primary_ip.insert(name.clone(), first.address.to_string());
            }
        }
        if let Some((mac, mtu)) = links.get(name) {
            if let Some(mac) = mac {
                iface.insert("mac".into(), json!(mac));
                legacy.insert(format!("macaddress_{lname}"), json!(mac));
            }
            if let Some(mtu) = mtu {
                iface.insert("mtu".into(), json!(mtu));
                legacy.insert(format!("mtu_{lname}"), json!(mtu));
            }
        }
        interfaces.insert(name.clone(), Value::Object(iface));
    }
    let primary = default_route
        .filter(|r| primary_ip.contains_key(*r))
        .map(str::to_string)
        .or_else(|| {
            primary_ip
                .keys()
                .find(|n| *n != "lo" && !n.starts_with("lo:"))
                .cloned()
        });
    let mut net = Map::new();
    net.insert("hostname".into(), json!(names.hostname));
    net.insert("fqdn".into(), json!(names.fqdn));
    if let Some(domain) = &names.domain {
        net.insert("domain".into(), json!(domain));
    }
    if let Some(primary) = &primary {
        net.insert("primary".into(), json!(primary));
        let iface = interfaces.get(primary.as_str()).unwrap_or(&Value::Null);
        for key in [
            "ip", "ip6", "mac", "mtu", "netmask", "netmask6", "network", "network6",
        ] {
            if let Some(v) = iface.get(key) {
                net.insert(key.into(), v.clone());
            }
        }
        for (key, legacy_key) in [
            ("ip", "ipaddress"),
            ("ip6", "ipaddress6"),
            ("mac", "macaddress"),
            ("netmask", "netmask"),
        ] {
            if let Some(v) = iface.get(key) {
                legacy.insert(legacy_key.into(), v.clone());
            }
        }
    }
    legacy.insert(
        "interfaces".into(),
        json!(all
            .iter()
            .map(|n| legacy_name(n))
            .collect::<Vec<_>>()
            .join(",")),
    );
    net.insert("interfaces".into(), Value::Object(interfaces));
    (net, legacy)
}

/// MAC address and MTU of every interface in `/sys/class/net`.
fn links() -> BTreeMap<String, (Option<String>, Option<u64>)> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return BTreeMap::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let base = entry.path();
            let mac = read_trimmed(base.join("address")).filter(|m| m != "00:00:00:00:00:00");
            let mtu = read_trimmed(base.join("mtu")).and_then(|m| m.parse().ok());
            Some((name, (mac, mtu)))
        })
        .collect()
}

fn networking_facts(facts: &mut Map<String, Value>, names: &HostNames) {
    facts.insert("hostname".into(), json!(names.hostname));
    facts.insert("fqdn".into(), json!(names.fqdn));
    if let Some(domain) = &names.domain {
        facts.insert("domain".into(), json!(domain));
    }
    let route = std::fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|t| parse_default_route(&t));
    let (net, legacy) = networking_from(names, &interface_bindings(), &links(), route.as_deref());
    facts.extend(legacy);
    facts.insert("networking".into(), Value::Object(net));
}

// ------------------------------------------------------- timezone, virtual

/// The zone name from a `/etc/localtime` link target
/// ("/usr/share/zoneinfo/Europe/Berlin" → "Europe/Berlin").
pub fn zone_from_link(target: &str) -> Option<String> {
    let (_, zone) = target.split_once("zoneinfo/")?;
    let zone = zone
        .strip_prefix("posix/")
        .or_else(|| zone.strip_prefix("right/"))
        .unwrap_or(zone);
    (!zone.is_empty()).then(|| zone.to_string())
}

fn timezone() -> String {
    read_trimmed("/etc/timezone")
        .or_else(|| {
            std::fs::read_link("/etc/localtime")
                .ok()
                .and_then(|t| zone_from_link(&t.to_string_lossy()))
        })
        .or_else(|| {
            std::env::var("TZ")
                .ok()
                .map(|tz| tz.trim_start_matches(':').trim().to_string())
                .filter(|tz| !tz.is_empty())
        })
        .unwrap_or_else(|| "UTC".to_string())
}

/// What the machine runs on, from the evidence at hand; "physical" unless
/// something says otherwise.
#[derive(Debug, Default)]
pub struct VirtualEvidence<'a> {
    pub dockerenv: bool,
    pub containerenv: bool,
    pub pid1_cgroup: &'a str,
    pub dmi_product: &'a str,
    pub dmi_vendor: &'a str,
    pub hypervisor_flag: bool,
}

/// Facter's `virtual` value for `evidence`.
pub fn classify_virtual(evidence: &VirtualEvidence) -> &'static str {
    let cgroup = evidence.pid1_cgroup;
    if evidence.dockerenv || cgroup.contains("/docker") || cgroup.contains("kubepods") {
        return "docker";
    }
    if evidence.containerenv || cgroup.contains("libpod") {
        return "podman";
    }
    if cgroup.contains("/lxc") {
        return "lxc";
    }
    let product = evidence.dmi_product.to_ascii_lowercase();
    let vendor = evidence.dmi_vendor.to_ascii_lowercase();
    let dmi = format!("{product} {vendor}");
    if dmi.contains("virtualbox") {
        "virtualbox"
    } else if dmi.contains("vmware") {
        "vmware"
    } else if dmi.contains("hvm domu") || vendor.contains("xen") {
        "xenhvm"
    } else if vendor.contains("microsoft") && product.contains("virtual machine") {
        "hyperv"
    } else if dmi.contains("google") {
        "gce"
    } else if dmi.contains("kvm")
        || dmi.contains("qemu")
        || vendor.contains("amazon ec2")
        || evidence.hypervisor_flag
    {
        "kvm"
    } else {
        "physical"
    }
}

fn virtual_facts(facts: &mut Map<String, Value>) {
    let cgroup = std::fs::read_to_string("/proc/1/cgroup").unwrap_or_default();
    let product = read_trimmed("/sys/class/dmi/id/product_name").unwrap_or_default();
    let vendor = read_trimmed("/sys/class/dmi/id/sys_vendor").unwrap_or_default();
    let cpuinfo = parse_cpuinfo(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default());
    let evidence = VirtualEvidence {
        dockerenv: Path::new("/.dockerenv").exists(),
        containerenv: Path::new("/run/.containerenv").exists(),
        pid1_cgroup: &cgroup,
        dmi_product: &product,
        dmi_vendor: &vendor,
        hypervisor_flag: cpuinfo.hypervisor,
    };
    let kind = classify_virtual(&evidence);
    facts.insert("virtual".into(), json!(kind));
    facts.insert("is_virtual".into(), json!(kind != "physical"));
}

// --------------------------------------------------------------- facter

/// Facts from the real `facter -j`, for `factsource = facter`.
///
/// The first [`get`](FacterSource::get) runs facter; later calls answer from
/// the cache until it is older than the refresh interval. `get` blocks while
/// facter runs (up to the timeout, 60 s by default): from async code call it
/// through `tokio::task::spawn_blocking`. Concurrent callers wait for the one
/// run rather than starting their own.
///
/// ```no_run
/// use std::time::Duration;
/// let facter = muster_server::sysfacts::FacterSource::new(Duration::from_secs(300));
/// let facts = facter.get()?;
/// println!("{}", facts["os"]["family"]);
/// # Ok::<(), String>(())
/// ```
#[derive(Debug)]
pub struct FacterSource {
    program: PathBuf,
    args: Vec<String>,
    refresh: Duration,
    timeout: Duration,
    state: Mutex<FacterState>,
}

#[derive(Debug, Default)]
struct FacterState {
    last_good: Option<Arc<Value>>,
    last_error: Option<String>,
    checked: Option<Instant>,
}

/// Facter output larger than this is refused.
const MAX_FACTER_OUTPUT: u64 = 64 << 20;

impl FacterSource {
    /// Runs `facter -j`, found on `PATH`, at most once per `refresh`.
    pub fn new(refresh: Duration) -> FacterSource {
        FacterSource::with_command(PathBuf::from("facter"), vec!["-j".to_string()], refresh)
    }

    /// Runs `program` with `args` instead of `facter -j`.
    pub fn with_command(program: PathBuf, args: Vec<String>, refresh: Duration) -> FacterSource {
        FacterSource {
            program,
            args,
            refresh,
            timeout: Duration::from_secs(60),
            state: Mutex::new(FacterState::default()),
        }
    }

    /// Kills a run of the program that takes longer than `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> FacterSource {
        self.timeout = timeout;
        self
    }

    /// The facts, from the cache or from a new run when the cache is stale.
    ///
    /// A failed run keeps the last good facts and returns them; with none,
    /// it is an error naming the program. A failure is not retried before
    /// the refresh interval has passed either. Blocks while the program runs.
    pub fn get(&self) -> Result<Arc<Value>, String> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let fresh = state.checked.is_some_and(|at| at.elapsed() < self.refresh);
        if !fresh {
            match self.run() {
                Ok(value) => {
                    state.last_good = Some(Arc::new(value));
                    state.last_error = None;
                }
                Err(e) => {
                    tracing::warn!("{e}");
                    state.last_error = Some(e);
                }
            }
            state.checked = Some(Instant::now());
        }
        match (&state.last_good, &state.last_error) {
            (Some(value), _) => Ok(Arc::clone(value)),
            (None, Some(e)) => Err(e.clone()),
            (None, None) => Err(format!("{}: no facts yet", self.program.display())),
        }
    }

    fn run(&self) -> Result<Value, String> {
        let name = self.program.display().to_string();
        let mut child = self
            .spawn()
            .map_err(|e| format!("{name}: cannot run: {e}"))?;
        let deadline = Instant::now() + self.timeout;
        // Read both pipes on their own threads so a chatty program cannot
        // fill one pipe and stall while we wait.
        let (out_tx, out_rx) = std::sync::mpsc::channel();
        let (err_tx, err_rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        std::thread::spawn(move || out_tx.send(read_capped(stdout, MAX_FACTER_OUTPUT)));
        std::thread::spawn(move || err_tx.send(read_capped(stderr, 64 << 10)));
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{name}: no answer within {} s, killed",
                        self.timeout.as_secs_f64()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("{name}: {e}")),
            }
        };
        // A background process it left behind may hold the pipes open: do
        // not wait for their end past the deadline.
        let remaining = || {
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(100))
        };
        let stdout = out_rx.recv_timeout(remaining()).unwrap_or_default();
        let stderr = err_rx.recv_timeout(remaining()).unwrap_or_default();
        let why = String::from_utf8_lossy(&stderr);
        let last = why
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string();
        match serde_json::from_slice::<Value>(&stdout) {
            // facter exits 1 when one fact resolver fails (e.g. an unreadable
            // /proc file) but still prints every other fact: use them.
            Ok(value @ Value::Object(_)) => {
                if !status.success() {
                    tracing::warn!(program = %name, %status, error = %last, "facter reported errors; using the facts it printed");
                }
                Ok(value)
            }
            _ if !status.success() => Err(format!(
                "{name}: exited with {status}{}{last}",
                if last.is_empty() { "" } else { ": " }
            )),
            Ok(_) => Err(format!("{name}: output is not a JSON object of facts")),
            Err(e) => Err(format!("{name}: output is not JSON: {e}")),
        }
    }
}

impl FacterSource {
    fn spawn(&self) -> std::io::Result<std::process::Child> {
        let mut attempt = 0;
        loop {
            let spawned = Command::new(&self.program)
                .args(&self.args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn();
            match spawned {
                // A just-written program can be briefly "busy" while another
                // thread's fork still holds its write descriptor.
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 10 => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }
}

fn read_capped(pipe: Option<impl Read>, limit: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(pipe) = pipe {
        let mut pipe = pipe.take(limit);
        let _ = pipe.read_to_end(&mut buf);
        // Drain the rest so the writer is never blocked on a full pipe.
        let _ = std::io::copy(&mut pipe.into_inner(), &mut std::io::sink());
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_12: &str = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
"#;

    const UBUNTU_2404: &str = r#"PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.1 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
UBUNTU_CODENAME=noble
"#;

    const ROCKY_9: &str = r#"NAME="Rocky Linux"
VERSION="9.5 (Blue Onyx)"
ID="rocky"
ID_LIKE="rhel centos fedora"
VERSION_ID="9.5"
PLATFORM_ID="platform:el9"
PRETTY_NAME="Rocky Linux 9.5 (Blue Onyx)"
ANSI_COLOR="0;32"
"#;

    const ALMA_LIKE_UNKNOWN: &str = "ID=mydistro\nID_LIKE=\"rhel fedora\"\nVERSION_ID=3\n";

    #[test]
    fn os_release_quotes_and_comments() {
        let f =
            parse_os_release("# comment\nA=\"x \\\"y\\\"\"\nB='single'\nC=plain\nbroken line\n");
        assert_eq!(f["A"], "x \"y\"");
        assert_eq!(f["B"], "single");
        assert_eq!(f["C"], "plain");
        assert_eq!(f.len(), 3);
    }

    #[test]
    fn debian_12_uses_debian_version() {
        let os = Value::Object(os_from(DEBIAN_12, Some("12.8\n"), Some("x86_64")));
        assert_eq!(os["family"], "Debian");
        assert_eq!(os["name"], "Debian");
        assert_eq!(
            os["release"],
            json!({"full": "12.8", "major": "12", "minor": "8"})
        );
        assert_eq!(os["architecture"], "amd64");
        assert_eq!(os["hardware"], "x86_64");
        assert_eq!(os["distro"]["codename"], "bookworm");
        // testing/unstable write a codename there, not a number.
        let os = Value::Object(os_from(DEBIAN_12, Some("trixie/sid"), Some("aarch64")));
        assert_eq!(os["release"], json!({"full": "12", "major": "12"}));
        assert_eq!(os["architecture"], "arm64");
    }

    #[test]
    fn ubuntu_major_is_year_and_month() {
        // Ubuntu ships /etc/debian_version too ("trixie/sid"); it must not win.
        let os = Value::Object(os_from(UBUNTU_2404, Some("trixie/sid"), Some("x86_64")));
        assert_eq!(os["family"], "Debian");
        assert_eq!(os["name"], "Ubuntu");
        assert_eq!(os["release"], json!({"full": "24.04", "major": "24.04"}));
        assert_eq!(os["architecture"], "amd64");
    }

    #[test]
    fn rocky_9_is_redhat() {
        let os = Value::Object(os_from(ROCKY_9, None, Some("x86_64")));
        assert_eq!(os["family"], "RedHat");
        assert_eq!(os["name"], "Rocky");
        assert_eq!(
            os["release"],
            json!({"full": "9.5", "major": "9", "minor": "5"})
        );
        assert_eq!(os["architecture"], "x86_64");
        let os = Value::Object(os_from(ALMA_LIKE_UNKNOWN, None, None));
        assert_eq!(os["family"], "RedHat");
        assert_eq!(os["name"], "Mydistro");
        assert!(os.get("architecture").is_none());
    }

    #[test]
    fn odd_os_release_does_not_panic() {
        for text in [
            "",
            "=",
            "ID=",
            "ID=\"",
            "VERSION_ID=.",
            "ID='\nVERSION_ID=\"\"",
            "\u{0}\u{ffff}=\"é",
        ] {
            let os = os_from(text, Some(""), Some(""));
            assert!(os.contains_key("family"), "{text:?}");
        }
        assert_eq!(
            parse_release(".", "Debian"),
            Some(Release {
                full: ".".into(),
                major: "".into(),
                minor: None
            })
        );
    }

    #[test]
    fn kernel_version_parts() {
        assert_eq!(
            kernel_versions("6.1.0-28-amd64"),
            ("6.1.0".into(), "6.1".into())
        );
        assert_eq!(
            kernel_versions("5.14.0-503.el9.x86_64"),
            ("5.14.0".into(), "5.14".into())
        );
        assert_eq!(kernel_versions("4.4.0"), ("4.4.0".into(), "4.4".into()));
        assert_eq!(kernel_versions(""), ("".into(), "".into()));
    }

    #[test]
    fn cpuinfo_x86_and_arm() {
        let x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU\nphysical id\t: 0\nflags\t\t: fpu vme hypervisor\n\n\
                   processor\t: 1\nmodel name\t: Intel(R) Xeon(R) CPU\nphysical id\t: 1\nflags\t\t: fpu\n";
        let info = parse_cpuinfo(x86);
        assert_eq!(info.count, 2);
        assert_eq!(info.models, vec!["Intel(R) Xeon(R) CPU"; 2]);
        assert_eq!(info.physical_count, 2);
        assert!(info.hypervisor);
        let arm = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\n\nprocessor\t: 1\nBogoMIPS\t: 50.00\n";
        let info = parse_cpuinfo(arm);
        assert_eq!(
            (
                info.count,
                info.models.len(),
                info.physical_count,
                info.hypervisor
            ),
            (2, 0, 0, false)
        );
        assert_eq!(
            parse_cpuinfo("garbage\n::::\nprocessor: x\n"),
            CpuInfo::default()
        );
    }

    #[test]
    fn meminfo_and_human_bytes() {
        let text = "MemTotal:       24610716 kB\nMemFree:         1000000 kB\nMemAvailable:   16000000 kB\nBuffers: 10 kB\n";
        assert_eq!(
            parse_meminfo(text),
            Some((24610716 * 1024, 16000000 * 1024))
        );
        let old = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 25 kB\n";
        assert_eq!(parse_meminfo(old), Some((1_024_000, 175 * 1024)));
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
        assert_eq!(parse_meminfo("MemTotal: lots\n"), None);
        assert_eq!(human_bytes(24610716 * 1024), "23.47 GiB");
        assert_eq!(human_bytes(1023), "1023 bytes");
        assert_eq!(human_bytes(1024), "1.00 KiB");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(2047), "1.99 KiB");
        assert!(human_bytes(u64::MAX).ends_with(" EiB"));
    }

    #[test]
    fn uptime_text_and_words() {
        assert_eq!(parse_uptime("350735.47 234388.90\n"), Some(350735));
        assert_eq!(parse_uptime(""), None);
        assert_eq!(parse_uptime("-1 2"), None);
        assert_eq!(parse_uptime("NaN 2"), None);
        assert_eq!(human_uptime(350735), "4 days");
        assert_eq!(human_uptime(86_400), "1 day");
        assert_eq!(human_uptime(3720), "1:02 hours");
        assert_eq!(human_uptime(59), "0:00 hours");
    }

    #[test]
    fn default_route_lowest_metric() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
                    eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                    eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    down0\t00000000\t01010101\t0002\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(parse_default_route(text).as_deref(), Some("eth0"));
        assert_eq!(parse_default_route("Iface\n"), None);
        assert_eq!(parse_default_route("x\ny z\n"), None);
    }

    #[test]
    fn host_names_from_each_source() {
        let n = resolve_host_names("web1.example.com", None, "", None, "");
        assert_eq!(
            (n.hostname.as_str(), n.fqdn.as_str(), n.domain.as_deref()),
            ("web1", "web1.example.com", Some("example.com"))
        );
        let n = resolve_host_names("web1", Some("web1.corp.net"), "", None, "");
        assert_eq!(n.fqdn, "web1.corp.net");
        let hosts = "127.0.0.1 localhost\n10.0.0.5 web1.lan.example web1 # me\n";
        let n = resolve_host_names("web1", Some("web1"), hosts, Some("(none)"), "");
        assert_eq!(n.domain.as_deref(), Some("lan.example"));
        let n = resolve_host_names("web1", None, "127.0.0.1 localhost\n", Some("nis.dom"), "");
        assert_eq!(n.fqdn, "web1.nis.dom");
        let n = resolve_host_names(
            "web1",
            None,
            "",
            Some("(none)"),
            "search a b\ndomain res.example\n",
        );
        assert_eq!(n.fqdn, "web1.res.example");
        let n = resolve_host_names(
            "vm",
            None,
            "127.0.0.1 vm\n",
            Some("(none)"),
            "nameserver 1.1.1.1\n",
        );
        assert_eq!((n.fqdn.as_str(), n.domain), ("vm", None));
        let n = resolve_host_names("", None, "", None, "");
        assert_eq!(n.hostname, "");
        // Another host's name in /etc/hosts does not lend its domain.
        assert_eq!(
            parse_hosts_domain("1.2.3.4 web10.other.net web10\n", "web1"),
            None
        );
    }

    #[test]
    fn networking_layout_and_legacy_names() {
        let names = HostNames {
            hostname: "vm".into(),
            fqdn: "vm.example".into(),
            domain: Some("example".into()),
        };
        let ip = |s: &str| {
            s.parse::<IpAddr>()
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        };
        let b = |i: &str, a: &str, m: &str| Binding {
            interface: i.into(),
            address: ip(a),
            netmask: Some(ip(m)),
        };
        let bindings = vec![
            b("lo", "127.0.0.1", "255.0.0.0"),
            b("eth0", "192.0.2.10", "255.255.255.0"),
            b("eth0", "fe80::1", "ffff:ffff:ffff:ffff::"),
            b("eth0", "2001:db8::10", "ffff:ffff:ffff:ffff::"),
            b("eth0.100", "198.51.100.7", "255.255.255.128"),
        ];
        let mut links = BTreeMap::new();
        links.insert(
            "eth0".to_string(),
            (Some("52:54:00:12:34:56".to_string()), Some(1500)),
        );
        links.insert("lo".to_string(), (None, Some(65536)));
        links.insert(
            "eth1".to_string(),
            (Some("52:54:00:00:00:01".to_string()), None),
        );
        let (net, legacy) = networking_from(&names, &bindings, &links, Some("eth0"));
        let net = Value::Object(net);
        assert_eq!(net["primary"], "eth0");
        assert_eq!(net["ip"], "192.0.2.10");
        assert_eq!(net["ip6"], "2001:db8::10");
        assert_eq!(net["mac"], "52:54:00:12:34:56");
        assert_eq!(net["fqdn"], "vm.example");
        let eth0 = &net["interfaces"]["eth0"];
        assert_eq!(eth0["mtu"], 1500);
        assert_eq!(
            eth0["bindings"],
            json!([{"address": "192.0.2.10", "netmask": "255.255.255.0", "network": "192.0.2.0"}])
        );
        assert_eq!(eth0["bindings6"].as_array().map(Vec::len), Some(2));
        assert_eq!(net["interfaces"]["eth0.100"]["network"], "198.51.100.0");
        assert_eq!(
            net["interfaces"]["eth1"],
            json!({"mac": "52:54:00:00:00:01"})
        );
        assert_eq!(legacy["ipaddress"], "192.0.2.10");
        assert_eq!(legacy["ipaddress_eth0"], "192.0.2.10");
        assert_eq!(legacy["ipaddress_eth0_100"], "198.51.100.7");
        assert_eq!(legacy["ipaddress_lo"], "127.0.0.1");
        assert_eq!(legacy["macaddress_eth0"], "52:54:00:12:34:56");
        assert_eq!(legacy["interfaces"], "eth0,eth0_100,eth1,lo");
        // No default route: the first non-loopback interface with IPv4.
        let (net, _) = networking_from(&names, &bindings, &links, None);
        assert_eq!(net["primary"], "eth0");
        let (net, legacy) = networking_from(&names, &bindings[..1], &BTreeMap::new(), Some("eth9"));
        assert!(net.get("primary").is_none() && legacy.get("ipaddress").is_none());
        let (net, _) = networking_from(&names, &[], &BTreeMap::new(), None);
        assert_eq!(net["interfaces"], json!({}));
    }

    #[test]
    fn zones_and_virtual() {
        assert_eq!(
            zone_from_link("/usr/share/zoneinfo/Europe/Berlin").as_deref(),
            Some("Europe/Berlin")
        );
        assert_eq!(
            zone_from_link("../usr/share/zoneinfo/posix/Etc/UTC").as_deref(),
            Some("Etc/UTC")
        );
        assert_eq!(zone_from_link("/etc/whatever"), None);
        let v = |e: VirtualEvidence| classify_virtual(&e);
        assert_eq!(v(VirtualEvidence::default()), "physical");
        assert_eq!(
            v(VirtualEvidence {
                dockerenv: true,
                ..Default::default()
            }),
            "docker"
        );
        assert_eq!(
            v(VirtualEvidence {
                pid1_cgroup: "0::/system.slice/docker-abc.scope",
                ..Default::default()
            }),
            "docker"
        );
        assert_eq!(
            v(VirtualEvidence {
                pid1_cgroup: "0::/lxc/c1",
                ..Default::default()
            }),
            "lxc"
        );
        assert_eq!(
            v(VirtualEvidence {
                dmi_product: "KVM",
                ..Default::default()
            }),
            "kvm"
        );
        assert_eq!(
            v(VirtualEvidence {
                dmi_product: "Standard PC (Q35 + ICH9, 2009)",
                dmi_vendor: "QEMU",
                ..Default::default()
            }),
            "kvm"
        );
        assert_eq!(
            v(VirtualEvidence {
                dmi_product: "VirtualBox",
                ..Default::default()
            }),
            "virtualbox"
        );
        assert_eq!(
            v(VirtualEvidence {
                dmi_product: "VMware Virtual Platform",
                ..Default::default()
            }),
            "vmware"
        );
        assert_eq!(
            v(VirtualEvidence {
                hypervisor_flag: true,
                ..Default::default()
            }),
            "kvm"
        );
    }

    #[test]
    fn gather_on_this_machine() {
        let facts = gather("x");
        assert_eq!(facts["identity"], "x");
        assert!(facts["os"]["family"].is_string(), "{facts:#}");
        assert_eq!(facts["osfamily"], facts["os"]["family"]);
        assert_eq!(facts["kernel"], "Linux");
        assert!(facts["kernelrelease"].is_string());
        assert!(facts["processors"]["count"].as_u64() >= Some(1));
        assert!(facts["memory"]["system"]["total_bytes"].as_u64() > Some(0));
        assert!(
            facts["networking"]["interfaces"]["lo"].is_object(),
            "{facts:#}"
        );
        assert!(facts["system_uptime"]["seconds"].is_u64());
        assert!(facts["hostname"].is_string() && facts["fqdn"].is_string());
        assert!(facts["timezone"].is_string() && facts["virtual"].is_string());
        assert_eq!(facts["muster_version"], env!("CARGO_PKG_VERSION"));
    }

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    #[test]
    fn facter_output_is_cached_and_refreshed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let counter = dir.path().join("runs");
        let body = format!(
            "echo x >> '{c}'\nn=$(wc -l < '{c}')\necho \"{{\\\"os\\\": {{\\\"family\\\": \\\"Debian\\\"}}, \\\"run\\\": $n}}\"",
            c = counter.display()
        );
        let program = script(dir.path(), "facter", &body);
        let cached = FacterSource::with_command(
            program.clone(),
            vec!["-j".into()],
            Duration::from_secs(300),
        );
        let first = cached.get().expect("facts");
        assert_eq!(first["os"]["family"], "Debian");
        assert_eq!(cached.get().expect("facts")["run"], 1);
        let eager = FacterSource::with_command(program, vec![], Duration::ZERO);
        let a = eager.get().expect("facts")["run"].as_u64();
        let b = eager.get().expect("facts")["run"].as_u64();
        assert!(b > a, "{a:?} then {b:?}");
    }

    #[test]
    fn facter_failures_name_the_program() {
        let dir = tempfile::tempdir().expect("tempdir");
        let garbage = script(dir.path(), "garbage-facter", "echo 'this is not json'");
        let err = FacterSource::with_command(garbage.clone(), vec![], Duration::ZERO)
            .get()
            .unwrap_err();
        assert!(
            err.contains("garbage-facter") && err.contains("not JSON"),
            "{err}"
        );
        let failing = script(
            dir.path(),
            "failing-facter",
            "echo 'boom happened' >&2; exit 3",
        );
        let err = FacterSource::with_command(failing, vec![], Duration::ZERO)
            .get()
            .unwrap_err();
        assert!(
            err.contains("failing-facter") && err.contains("boom happened"),
            "{err}"
        );
        let missing = dir.path().join("no-such-facter");
        let err = FacterSource::with_command(missing, vec![], Duration::ZERO)
            .get()
            .unwrap_err();
        assert!(err.contains("no-such-facter"), "{err}");
        let slow = script(dir.path(), "slow-facter", "exec sleep 30");
        let started = Instant::now();
        let err = FacterSource::with_command(slow, vec![], Duration::ZERO)
            .timeout(Duration::from_millis(200))
            .get()
            .unwrap_err();
        assert!(
            err.contains("slow-facter") && started.elapsed() < Duration::from_secs(10),
            "{err}"
        );
    }

    #[test]
    fn facter_keeps_last_good_value_on_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flag = dir.path().join("broken");
        let body = format!(
            "if [ -e '{}' ]; then exit 1; fi\necho '{{\"a\": 1}}'",
            flag.display()
        );
        let program = script(dir.path(), "facter", &body);
        let source = FacterSource::with_command(program, vec![], Duration::ZERO);
        assert_eq!(source.get().expect("facts")["a"], 1);
        std::fs::write(&flag, "").expect("flag");
        assert_eq!(source.get().expect("last good facts")["a"], 1);
    }
}
