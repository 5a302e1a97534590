//! Named validators: what a DDL's `validation` means when it is a name
//! rather than a regex.
//!
//! Choria reads a `validation` that starts with a lowercase letter as a
//! name and anything else as a regex. It runs `shellsafe`,
//! `ipv4address`, `ipv6address` and `ipaddress` itself and only warns about
//! other names; MCollective ran them as validator plugins, and the plugins
//! Choria's agents ship (`service_name`, `package_name`, the puppet and
//! nettest ones) are implemented here with their published rules, as are
//! go-choria's `duration`, `maxlength=N`, `enum=a,b` and `regex=...` and a
//! few of muster's own. A name none of these know is accepted with a
//! warning, once, as Choria does.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};

use super::{parse_bool, parse_float, pattern};

/// Every validator name this build knows; names with `=` take the rest as
/// their argument.
pub(crate) const NAMES: &[&str] = &[
    // Choria and MCollective core.
    "shellsafe",
    "ipv4address",
    "ipv6address",
    "ipaddress",
    // go-choria's validator package.
    "ipv4",
    "ipv6",
    "duration",
    "maxlength=N",
    "enum=a,b",
    "regex=PATTERN",
    // Plugins shipped with Choria's agents.
    "service_name",
    "package_name",
    "puppet_variable",
    "puppet_tags",
    "puppet_server_address",
    "puppet_resource",
    "nettest_fqdn",
    "nettest_server_address",
    // muster's own.
    "boolean",
    "bool",
    "integer",
    "float",
    "number",
    "hostname",
];

/// What a validation came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The text passes.
    Pass,
    /// The text fails, and why (without the text itself).
    Fail(String),
    /// The DDL's regex cannot be compiled, and why.
    BadRegex(String),
}

/// Whether Choria reads `validation` as a validator name, not a regex.
pub(crate) fn is_name(validation: &str) -> bool {
    validation.starts_with(|c: char| c.is_ascii_lowercase())
}

/// Runs `validation` (a name or a regex) over `text`.
pub(crate) fn check(validation: &str, text: &str) -> Verdict {
    if !is_name(validation) {
        return regex(validation, text);
    }
    let result = match validation {
        "shellsafe" => shellsafe(text),
        "ipv4address" | "ipv4" => ipv4(text),
        "ipv6address" | "ipv6" => ipv6(text),
        "ipaddress" => ip(text)
            .map(|_| ())
            .ok_or_else(|| "is not an IP address".into()),
        "duration" => duration(text),
        "service_name" => service_name(text),
        "package_name" => package_name(text),
        "puppet_variable" => shellsafe(text).and_then(|()| puppet_variable(text)),
        "puppet_tags" => puppet_tags(text),
        "puppet_server_address" => puppet_server_address(text),
        "puppet_resource" => puppet_resource(text),
        "nettest_fqdn" => nettest_fqdn(text),
        "nettest_server_address" => nettest_server_address(text),
        "boolean" | "bool" => parse_bool(text)
            .map(|_| ())
            .ok_or_else(|| "is not a boolean".into()),
        "integer" => text
            .trim()
            .parse::<i64>()
            .map(|_| ())
            .map_err(|_| "is not an integer".into()),
        "float" | "number" => parse_float(text)
            .map(|_| ())
            .ok_or_else(|| "is not a number".into()),
        "hostname" => {
            if is_hostname(text) {
                Ok(())
            } else {
                Err("is not a host name".into())
            }
        }
        other => {
            if let Some(max) = other.strip_prefix("maxlength=") {
                match max.parse::<usize>() {
                    Ok(max) if text.chars().count() > max => {
                        Err(format!("is longer than {max} characters"))
                    }
                    Ok(_) => Ok(()),
                    Err(_) => unknown(other),
                }
            } else if let Some(list) = other.strip_prefix("enum=") {
                if list.split(',').any(|allowed| allowed == text) {
                    Ok(())
                } else {
                    Err(format!(
                        "is not in the allowed list: {}",
                        list.replace(',', ", ")
                    ))
                }
            } else if let Some(pattern) = other.strip_prefix("regex=") {
                return regex(pattern, text);
            } else {
                unknown(other)
            }
        }
    };
    match result {
        Ok(()) => Verdict::Pass,
        Err(why) => Verdict::Fail(why),
    }
}

fn regex(pattern: &str, text: &str) -> Verdict {
    match pattern::compile(pattern) {
        Ok(regex) if regex.is_match(text) => Verdict::Pass,
        Ok(_) => Verdict::Fail(format!("does not match {pattern}")),
        Err(why) => Verdict::BadRegex(why),
    }
}

/// Choria accepts what a validator it does not know would check, with a
/// warning; once per name keeps a busy node's log readable.
fn unknown(name: &str) -> Result<(), String> {
    static WARNED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let mut warned = WARNED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if warned.len() < 1024 && warned.insert(name.to_string()) {
        tracing::warn!(
            validator = name,
            "unknown DDL validator {name:?}: inputs it guards are accepted unchecked (known: {})",
            NAMES.join(", ")
        );
    }
    Ok(())
}

/// MCollective's and Choria's shellsafe: none of `` ` `` `$` `;` `|`
/// `&&` `>` `<`.
fn shellsafe(text: &str) -> Result<(), String> {
    match ["`", "$", ";", "|", "&&", ">", "<"]
        .iter()
        .find(|bad| text.contains(*bad))
    {
        Some(bad) => Err(format!("may not contain '{bad}'")),
        None => Ok(()),
    }
}

/// An address as Go's `net.ParseIP` reads one (no zones, no leading zeros).
fn ip(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>().ok()
}

/// Go's `To4() != nil`: dotted quads and IPv4-mapped IPv6 addresses.
fn ipv4(text: &str) -> Result<(), String> {
    match ip(text) {
        Some(IpAddr::V4(_)) => Ok(()),
        Some(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_some() => Ok(()),
        _ => Err("is not an IPv4 address".into()),
    }
}

fn ipv6(text: &str) -> Result<(), String> {
    match ip(text) {
        Some(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => Ok(()),
        _ => Err("is not an IPv6 address".into()),
    }
}

/// Go's `time.ParseDuration`: an optional sign, then `0` or one or more
/// decimal numbers each with a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`,
/// `h`), e.g. `1h2m`, `1.5s`, `-300ms`.
pub(crate) fn duration(text: &str) -> Result<(), String> {
    let bad = || Err("is not a duration such as 1h2m or 300ms".to_string());
    let rest = text.strip_prefix(['-', '+']).unwrap_or(text);
    if rest == "0" {
        return Ok(());
    }
    if rest.is_empty() {
        return bad();
    }
    let mut rest = rest;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_end];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return bad();
        }
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return bad(),
        };
        rest = &rest[unit_end..];
        total += number.parse::<f64>().unwrap_or(0.0) * nanos;
        // Go keeps durations in an int64 of nanoseconds.
        if total > i64::MAX as f64 {
            return Err("is too long a duration".into());
        }
    }
    Ok(())
}

/// Whether every character is an ASCII letter or digit or one of `extra`.
fn all_of(text: &str, extra: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// The service agent's validator: letters, digits and `. - _ : @`.
fn service_name(text: &str) -> Result<(), String> {
    if all_of(text, ".-_:@") {
        Ok(())
    } else {
        Err("is not a valid service name".into())
    }
}

/// The package agent's validator: letters, digits and `. - _`.
fn package_name(text: &str) -> Result<(), String> {
    if all_of(text, ".-_") {
        Ok(())
    } else {
        Err("is not a valid package name".into())
    }
}

/// The puppet agent's variable names: one letter, or letters, digits and `_`.
fn puppet_variable(text: &str) -> Result<(), String> {
    let valid = if text.chars().count() == 1 {
        text.chars().all(|c| c.is_ascii_alphabetic())
    } else {
        all_of(text, "_")
    };
    if valid {
        Ok(())
    } else {
        Err(format!("is not a valid variable name: {text:?}"))
    }
}

/// Ruby's `String#split(sep)`: nothing for an empty string, trailing
/// empty fields dropped.
fn ruby_split<'a>(text: &'a str, sep: &str) -> Vec<&'a str> {
    let mut parts: Vec<&str> = text.split(sep).collect();
    while parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    parts
}

/// Comma-separated tags, each a `::`-separated puppet variable path.
fn puppet_tags(text: &str) -> Result<(), String> {
    shellsafe(text)?;
    for tag in ruby_split(text, ",") {
        for part in ruby_split(tag, "::") {
            puppet_variable(part)?;
        }
    }
    Ok(())
}

/// A host name whose labels start with a letter (the puppet agent's rule).
fn puppet_host_name(text: &str) -> bool {
    !text.is_empty()
        && text.split('.').all(|label| {
            label.starts_with(|c: char| c.is_ascii_alphabetic())
                && !label.ends_with('-')
                && all_of(label, "-")
        })
}

/// An address as a digit string is not one, though Ruby's IPAddr may take it.
fn puppet_ip(text: &str) -> Option<IpAddr> {
    if text.chars().all(|c| c.is_ascii_digit()) {
        None
    } else {
        ip(text)
    }
}

/// `host`, `host:port`, an IPv4 or IPv6 address, `[ipv6]:port`.
fn puppet_server_address(text: &str) -> Result<(), String> {
    shellsafe(text)?;
    let (name, port): (&str, Option<&str>) = if matches!(puppet_ip(text), Some(IpAddr::V6(_))) {
        (text, None)
    } else if let Some(inner) = text.strip_prefix('[').filter(|rest| {
        rest.find(']').is_some_and(|end| {
            rest[..end]
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        })
    }) {
        let parts = ruby_split(inner, "]");
        let name = parts.first().copied().unwrap_or_default();
        let port = parts.get(1).map(|p| p.get(1..).unwrap_or_default());
        (name, port)
    } else if text.matches(':').count() == 1 {
        let parts = ruby_split(text, ":");
        (
            parts.first().copied().unwrap_or_default(),
            parts.get(1).copied(),
        )
    } else {
        (text, None)
    };
    if puppet_ip(name).is_none() && !puppet_host_name(name) {
        return Err(format!("the hostname '{name}' is not a valid hostname"));
    }
    if let Some(port) = port {
        if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!(
                "the port '{port}' is not a valid puppet master port"
            ));
        }
    }
    Ok(())
}

/// `type[title]`, as `puppet resource` names one.
fn puppet_resource(text: &str) -> Result<(), String> {
    let valid = text.split_once('[').is_some_and(|(kind, rest)| {
        all_of(kind, "_") && rest.len() > 1 && rest.ends_with(']') && !rest.contains('\n')
    });
    if valid {
        Ok(())
    } else {
        Err("is not a valid resource name".into())
    }
}

/// Labels of letters, digits and inner hyphens; `first` says what a label
/// may start with.
fn labels(text: &str, first: fn(char) -> bool) -> bool {
    !text.is_empty()
        && text
            .split('.')
            .all(|label| label.starts_with(first) && !label.ends_with('-') && all_of(label, "-"))
}

/// An IPv4 address or a host name whose labels start with a letter.
fn nettest_fqdn(text: &str) -> Result<(), String> {
    if ipv4(text).is_ok() || labels(text, |c| c.is_ascii_alphabetic()) {
        Ok(())
    } else {
        Err("value should be a valid fqdn".into())
    }
}

/// `host:port`, both required.
fn nettest_server_address(text: &str) -> Result<(), String> {
    shellsafe(text)?;
    let parts = ruby_split(text, ":");
    let (Some(host), Some(port)) = (parts.first(), parts.get(1)) else {
        return Err("must include both a hostname and port".into());
    };
    if !labels(host, |c| c.is_ascii_alphanumeric()) {
        return Err(format!("the hostname '{host}' is not a valid hostname"));
    }
    if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("the port '{port}' is not a valid port"));
    }
    Ok(())
}

/// An RFC 1123 host name: dot-separated labels of letters, digits and
/// inner hyphens, each at most 63 characters, 253 in all.
fn is_hostname(text: &str) -> bool {
    let name = text.strip_suffix('.').unwrap_or(text);
    name.len() <= 253
        && labels(name, |c| c.is_ascii_alphanumeric())
        && name.split('.').all(|label| label.len() <= 63)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passes(validation: &str, text: &str) -> bool {
        match check(validation, text) {
            Verdict::Pass => true,
            Verdict::Fail(_) => false,
            Verdict::BadRegex(e) => panic!("{validation}: {e}"),
        }
    }

    #[test]
    fn named_validators_follow_their_upstream_rules() {
        // (validator, text, passes) from go-choria's and the plugins' tests.
        let cases: &[(&str, &str, bool)] = &[
            ("shellsafe", "ok ok ok", true),
            ("shellsafe", "", true),
            ("shellsafe", "a & b", true),
            ("shellsafe", "a && b", false),
            ("shellsafe", "thing`thing", false),
            ("shellsafe", "thing$thing", false),
            ("shellsafe", "thing;thing", false),
            ("shellsafe", "thing|thing", false),
            ("shellsafe", "thing>thing", false),
            ("shellsafe", "thing<thing", false),
            ("ipv4address", "1.2.3.4", true),
            ("ipv4address", "::ffff:1.2.3.4", true),
            ("ipv4address", "300.1.1.1", false),
            ("ipv4address", "::1", false),
            ("ipv6address", "::1", true),
            ("ipv6address", "::ffff:1.2.3.4", false),
            ("ipv6address", "1.2.3.4", false),
            ("ipaddress", "1.2.3.4", true),
            ("ipaddress", "fe80::1", true),
            ("ipaddress", "host", false),
            ("duration", "1h2m", true),
            ("duration", "1.5s", true),
            ("duration", "-300ms", true),
            ("duration", "0", true),
            ("duration", "10", false),
            ("duration", "1d", false),
            ("duration", "", false),
            ("maxlength=3", "abc", true),
            ("maxlength=3", "abcd", false),
            ("enum=a,b", "b", true),
            ("enum=a,b", "c", false),
            ("regex=^a+$", "aa", true),
            ("service_name", "nginx", true),
            ("service_name", "getty@tty1.service", true),
            ("service_name", "a b", false),
            ("service_name", "", false),
            ("package_name", "libc6-dev_2.3", true),
            ("package_name", "vim:amd64", false),
            ("puppet_variable", "a", true),
            ("puppet_variable", "production", true),
            ("puppet_variable", "1", false),
            ("puppet_variable", "a-b", false),
            ("puppet_tags", "one,two::three", true),
            ("puppet_tags", "", true),
            ("puppet_tags", "one,t-wo", false),
            ("puppet_server_address", "box", true),
            ("puppet_server_address", "a.box.com", true),
            ("puppet_server_address", "a-nother.box.com", true),
            ("puppet_server_address", "foo bar", false),
            ("puppet_server_address", "1000", false),
            ("puppet_server_address", "a_box", false),
            ("puppet_server_address", "1.2", false),
            ("puppet_server_address", "1.1.1.1", true),
            ("puppet_server_address", "300.1.1.1", false),
            ("puppet_server_address", "::FFFF:129.144.52.38", true),
            ("puppet_server_address", "gggg::7a31:c1ff:fed6:92a2", false),
            ("puppet_server_address", "a:123", true),
            ("puppet_server_address", "a:a", false),
            ("puppet_server_address", "1.1.1.1:123", true),
            ("puppet_server_address", "[::1]:123", true),
            ("puppet_server_address", "[::1]:a", false),
            ("puppet_resource", "file[/etc/motd]", true),
            ("puppet_resource", "file", false),
            ("nettest_fqdn", "host.example.com", true),
            ("nettest_fqdn", "10.0.0.1", true),
            ("nettest_fqdn", "bad_host", false),
            ("nettest_server_address", "host.example.com:8080", true),
            ("nettest_server_address", "host.example.com", false),
            ("nettest_server_address", ":8080", false),
            ("nettest_server_address", "localhost#:8080", false),
            ("hostname", "node-1.example.com", true),
            ("hostname", "-bad", false),
            ("boolean", "yes", true),
            ("integer", "x", false),
        ];
        for (validator, text, want) in cases {
            assert_eq!(passes(validator, text), *want, "{validator} on {text:?}");
        }
    }

    #[test]
    fn an_unknown_name_passes_and_anything_else_is_a_regex() {
        assert_eq!(check("no_such_validator", "anything;at all"), Verdict::Pass);
        assert!(is_name("service_name"));
        assert!(!is_name("^[a-z]+$"));
        assert!(!is_name("Abc"));
        assert!(matches!(check("^[a-z]+$", "A"), Verdict::Fail(_)));
        assert!(matches!(check("^(a", "a"), Verdict::BadRegex(_)));
    }
}
