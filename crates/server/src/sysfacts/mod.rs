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
//! One module per area, each reading its own sources: `names` for the host
//! and domain names, `os`, `kernel`, `hardware` (processors and
//! memory), `uptime`, `networking` (with `ifaddrs`, the one module allowed
//! `unsafe`, for `getifaddrs`), `timezone`, `virtualization`, and `facter`.
//!
//! [`FacterSource`] is the alternative for `factsource = facter`: it runs the
//! real `facter -j` through the agents' process runner (its own process
//! group, killed whole at the deadline) and caches its answer.
//!
//! ```
//! let facts = muster_server::sysfacts::gather("node01");
//! assert_eq!(facts["identity"], "node01");
//! assert_eq!(facts["kernel"], "Linux");
//! ```

use std::path::Path;

use serde_json::{json, Map, Value};

mod facter;
mod hardware;
mod ifaddrs;
mod kernel;
mod names;
mod networking;
mod os;
mod timezone;
mod uptime;
mod virtualization;

pub use facter::{FacterError, FacterSource};
pub use hardware::{human_bytes, parse_cpuinfo, parse_meminfo, CpuInfo};
pub use kernel::kernel_versions;
pub use names::{parse_hosts_domain, parse_resolv_domain, resolve_host_names, HostNames};
pub use networking::{networking_from, parse_default_route, Binding};
pub use os::{os_family, os_from, os_name, parse_os_release, parse_release, Release};
pub use timezone::zone_from_link;
pub use uptime::{human_uptime, parse_uptime};
pub use virtualization::{classify_virtual, VirtualEvidence};

/// Collects the built-in facts of this machine, with `identity` as given.
///
/// Keys whose source is missing are left out; this never fails.
pub fn gather(identity: &str) -> Value {
    let mut facts = Map::new();
    facts.insert("identity".into(), json!(identity));
    let names = names::host_names();
    os::os_facts(&mut facts);
    kernel::kernel_facts(&mut facts);
    hardware::processor_facts(&mut facts);
    hardware::memory_facts(&mut facts);
    uptime::uptime_facts(&mut facts);
    networking::networking_facts(&mut facts, &names);
    facts.insert("timezone".into(), json!(timezone::timezone()));
    virtualization::virtual_facts(&mut facts);
    if let Ok(path) = std::env::var("PATH") {
        facts.insert("path".into(), json!(path));
    }
    facts.insert("muster_version".into(), json!(env!("CARGO_PKG_VERSION")));
    Value::Object(facts)
}

/// The file's text, trimmed; `None` when it is missing, unreadable or blank.
fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
