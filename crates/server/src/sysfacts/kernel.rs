//! The kernel's name and release, from `/proc/sys/kernel`: the same
//! strings `uname` gives, without a system call.

use serde_json::{json, Map, Value};

use super::read_trimmed;

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

pub(super) fn kernel_facts(facts: &mut Map<String, Value>) {
    let kernel = read_trimmed("/proc/sys/kernel/ostype").unwrap_or_else(|| "Linux".to_string());
    facts.insert("kernel".into(), json!(kernel));
    if let Some(release) = read_trimmed("/proc/sys/kernel/osrelease") {
        let (version, major) = kernel_versions(&release);
        facts.insert("kernelrelease".into(), json!(release));
        facts.insert("kernelversion".into(), json!(version));
        facts.insert("kernelmajversion".into(), json!(major));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
