//! Time since boot, from `/proc/uptime`: the kernel's own monotonic count,
//! unaffected by clock changes.

use serde_json::{json, Map, Value};

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

pub(super) fn uptime_facts(facts: &mut Map<String, Value>) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
