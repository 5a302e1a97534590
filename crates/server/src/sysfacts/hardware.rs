//! Processors and memory, from `/proc/cpuinfo` and `/proc/meminfo`.
//!
//! Those two files are what the kernel itself reports and read the same in
//! a container as on the host; sizes are written as facter writes them so
//! `memorysize` compares like it does under MCollective.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

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

pub(super) fn processor_facts(facts: &mut Map<String, Value>) {
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

pub(super) fn memory_facts(facts: &mut Map<String, Value>) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
