//! The operating system: distribution, family, release, architecture.
//!
//! `os-release` is what every current distribution ships, so it is the one
//! source of truth; Debian's point release is only in `/etc/debian_version`,
//! and the hardware name comes from `/proc` (or `uname` where `/proc` does
//! not say). Names and families follow facter so filters written for
//! MCollective keep matching.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::read_trimmed;

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
    /// The whole version, "12.8".
    pub full: String,
    /// What filters compare on: "12", or "24.04" on Ubuntu.
    pub major: String,
    /// The part after the major release, when there is one.
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

/// The machine hardware name ("x86_64"): `/proc` says it without a system
/// call; `uname` is the fallback where `/proc/sys/kernel/arch` is missing.
fn machine_hardware() -> Option<String> {
    read_trimmed("/proc/sys/kernel/arch").or_else(|| {
        let uname = rustix::system::uname();
        let machine = uname.machine().to_str().ok()?;
        (!machine.is_empty()).then(|| machine.to_string())
    })
}

pub(super) fn os_facts(facts: &mut Map<String, Value>) {
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
}
