//! The local time zone's name: `/etc/timezone` where Debian keeps it, else
//! the target of the `/etc/localtime` link, else `TZ`, else UTC.

use super::read_trimmed;

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

pub(super) fn timezone() -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_from_a_localtime_link() {
        assert_eq!(
            zone_from_link("/usr/share/zoneinfo/Europe/Berlin").as_deref(),
            Some("Europe/Berlin")
        );
        assert_eq!(
            zone_from_link("../usr/share/zoneinfo/posix/Etc/UTC").as_deref(),
            Some("Etc/UTC")
        );
        assert_eq!(zone_from_link("/etc/whatever"), None);
    }
}
