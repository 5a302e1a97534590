//! What the machine runs on: a container, a hypervisor, or bare metal.
//!
//! Containers show in `/.dockerenv`, `/run/.containerenv` and PID 1's
//! cgroup; hypervisors in the DMI product and vendor names and the CPU's
//! `hypervisor` flag. The evidence is read here and judged by a pure
//! function, so every verdict is testable without the machine.

use std::path::Path;

use serde_json::{json, Map, Value};

use super::hardware::parse_cpuinfo;
use super::read_trimmed;

/// What the machine runs on, from the evidence at hand; "physical" unless
/// something says otherwise.
#[derive(Debug, Default)]
pub struct VirtualEvidence<'a> {
    /// `/.dockerenv` exists: Docker made this root file system.
    pub dockerenv: bool,
    /// `/run/.containerenv` exists: Podman made it.
    pub containerenv: bool,
    /// `/proc/1/cgroup`: a container runtime names itself in PID 1's cgroup.
    pub pid1_cgroup: &'a str,
    /// The DMI product name, where hypervisors name themselves.
    pub dmi_product: &'a str,
    /// The DMI system vendor, where cloud providers name themselves.
    pub dmi_vendor: &'a str,
    /// The CPU's `hypervisor` flag: some hypervisor, even if none is named.
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

pub(super) fn virtual_facts(facts: &mut Map<String, Value>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_from_evidence() {
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
}
