//! Interfaces, addresses, MAC addresses, MTUs and the primary interface.
//!
//! Addresses come from `getifaddrs` (see [`super::ifaddrs`]), links from
//! `/sys/class/net`, the default route from `/proc/net/route`: the primary
//! interface is the default route's, as facter picks it, so `ipaddress` is
//! the address other machines reach this one by.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{json, Map, Value};

use super::ifaddrs::interface_bindings;
use super::names::HostNames;
use super::read_trimmed;

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
    /// The interface, alias labels ("eth0:1") folded into it.
    pub interface: String,
    /// The IPv4 or IPv6 address.
    pub address: IpAddr,
    /// Its netmask, when the kernel gave one.
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

pub(super) fn networking_facts(facts: &mut Map<String, Value>, names: &HostNames) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
