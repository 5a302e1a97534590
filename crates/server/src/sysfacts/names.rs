//! Host name, fully qualified name and domain.
//!
//! The kernel knows only the short name on most machines, so the domain is
//! looked for where facter looks: `/etc/hostname`, `/etc/hosts`, the NIS
//! domain name in `/proc`, `/etc/resolv.conf`. No DNS query: gathering facts
//! must not hang on a dead resolver.

use super::read_trimmed;

/// The short host name, the fully qualified name and the domain, if known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNames {
    /// The short name, without a domain ("web1").
    pub hostname: String,
    /// The short name and the domain, or the short name alone without one.
    pub fqdn: String,
    /// The DNS domain, when any source names one.
    pub domain: Option<String>,
}

pub(super) fn host_names() -> HostNames {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
