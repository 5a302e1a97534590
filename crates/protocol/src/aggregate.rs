//! Aggregate summaries: what a DDL's `aggregate` list asks the client to
//! compute across the replies to one action.
//!
//! MCollective's functions: `summary` (how many nodes gave each value),
//! `boolean_summary` (true/false counts under labels the DDL chooses),
//! `sum` and `average`. They run over the `data` of each successful reply,
//! so a node that failed does not skew a count. A second argument
//! `{"format": "..."}` formats each line printf-style, as MCollective and
//! Choria do (`"Average: %0.2f"`, `"%10s: %d"`). A function this build does
//! not know (a plugin such as `nettest_mma`) is skipped, and
//! [`unknown_functions`] names it so the client can say so.
//!
//! ```
//! use muster_protocol::{aggregate, ddl::Action};
//! use serde_json::json;
//! let action: Action = serde_json::from_value(json!({
//!     "action": "status",
//!     "output": {"version": {"display_as": "Version"}},
//!     "aggregate": [{"function": "summary", "args": ["version"]}]
//! })).unwrap();
//! let replies = [json!({"version": "1.2.3"}), json!({"version": "1.2.3"}), json!({"version": "1.2.4"})];
//! let replies: Vec<_> = replies.iter().collect();
//! let summaries = aggregate::compute(&action, &replies);
//! assert_eq!(summaries[0].render(), "Summary of Version:\n\n   1.2.3 = 2\n   1.2.4 = 1");
//! ```

use std::collections::BTreeMap;

use serde_json::Value;

use crate::ddl::{parse_bool, parse_float, scalar_text, Action, Aggregate};

/// One computed summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The aggregate function, e.g. `summary`.
    pub function: String,
    /// The output it summarises, e.g. `version`.
    pub output: String,
    /// The output's display name from the DDL, or its name.
    pub display_as: String,
    /// The summary itself.
    pub result: SummaryResult,
    /// The DDL's printf-style format for each line, if it gives one.
    pub format: Option<String>,
}

/// What an aggregate function came to.
#[derive(Debug, Clone, PartialEq)]
pub enum SummaryResult {
    /// Each value and how many times it was seen, most common first, then
    /// by value (`summary`, `boolean_summary`).
    Counts(Vec<(String, usize)>),
    /// A single number (`sum`, `average`).
    Number(f64),
}

/// The aggregate functions this build computes.
pub const FUNCTIONS: &[&str] = &["summary", "boolean_summary", "sum", "average"];

/// The aggregate functions `action` asks for that this build does not
/// compute, in DDL order without repeats, so a client can warn about the
/// summaries it cannot show.
pub fn unknown_functions(action: &Action) -> Vec<&str> {
    let mut unknown: Vec<&str> = Vec::new();
    for aggregate in &action.aggregate {
        let function = aggregate.function.as_str();
        if !FUNCTIONS.contains(&function) && !unknown.contains(&function) {
            unknown.push(function);
        }
    }
    unknown
}

/// Computes every aggregate `action` declares over the data of its
/// successful replies. Aggregates with an unknown function (see
/// [`unknown_functions`]) or without an output name are skipped, as is an
/// `average` of no numbers.
pub fn compute(action: &Action, replies: &[&Value]) -> Vec<Summary> {
    action
        .aggregate
        .iter()
        .filter_map(|aggregate| summarise(action, aggregate, replies))
        .collect()
}

fn summarise(action: &Action, aggregate: &Aggregate, replies: &[&Value]) -> Option<Summary> {
    let output = aggregate.args.first()?.as_str()?.to_string();
    let values = || {
        replies
            .iter()
            .filter_map(|reply| reply.get(&output))
            .filter(|value| !value.is_null())
    };
    let result = match aggregate.function.as_str() {
        "summary" => {
            let mut counts = BTreeMap::new();
            for value in values() {
                let items = match value {
                    Value::Array(items) => items.iter().collect(),
                    other => vec![other],
                };
                // An empty value (an absent package's arch) says nothing.
                for item in items.into_iter().filter(|i| i.as_str() != Some("")) {
                    *counts.entry(text(item)).or_insert(0) += 1;
                }
            }
            SummaryResult::Counts(sorted(counts))
        }
        "boolean_summary" => {
            let labels = aggregate.args.get(1);
            let label = |which: bool| {
                let key = if which { "true" } else { "false" };
                labels
                    .and_then(|l| l.get(key))
                    .and_then(Value::as_str)
                    .unwrap_or(key)
                    .to_string()
            };
            let mut counts = BTreeMap::from([(label(true), 0), (label(false), 0)]);
            for value in values() {
                let truth = match value {
                    Value::Bool(b) => Some(*b),
                    Value::String(s) => parse_bool(s),
                    _ => None,
                };
                if let Some(truth) = truth {
                    *counts.entry(label(truth)).or_insert(0) += 1;
                }
            }
            SummaryResult::Counts(sorted(counts))
        }
        "sum" => SummaryResult::Number(values().filter_map(number).sum()),
        "average" => {
            let numbers: Vec<f64> = values().filter_map(number).collect();
            if numbers.is_empty() {
                return None;
            }
            SummaryResult::Number(numbers.iter().sum::<f64>() / numbers.len() as f64)
        }
        _ => return None,
    };
    let display_as = action
        .output
        .get(&output)
        .map(|o| o.display_as.clone())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| output.clone());
    let format = aggregate
        .args
        .get(1)
        .and_then(|options| options.get("format"))
        .and_then(Value::as_str)
        .filter(|f| !f.is_empty())
        .map(str::to_string);
    Some(Summary {
        function: aggregate.function.clone(),
        output,
        display_as,
        result,
        format,
    })
}

/// A number, or a string holding one; anything else is skipped.
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_float(s),
        _ => None,
    }
}

fn text(value: &Value) -> String {
    scalar_text(value).unwrap_or_else(|| value.to_string())
}

fn sorted(counts: BTreeMap<String, usize>) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
    // The map is ordered by value already; a stable sort keeps that for ties.
    counts.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    counts
}

impl Summary {
    /// The summary as MCollective prints it after the results: counts
    /// right-aligned under a heading, a number on the heading's line; with
    /// the DDL's format, each line formatted by it (a count line gets the
    /// value and its count, a number line the number) under the heading.
    /// No trailing newline.
    pub fn render(&self) -> String {
        if let Some(format) = &self.format {
            let lines: Vec<String> = match &self.result {
                SummaryResult::Number(n) => vec![printf(format, &[Value::from(*n)])],
                SummaryResult::Counts(counts) => counts
                    .iter()
                    .map(|(value, count)| {
                        printf(format, &[Value::from(value.as_str()), Value::from(*count)])
                    })
                    .collect(),
            };
            if !lines.is_empty() {
                let lines: Vec<String> = lines.iter().map(|l| format!("   {l}")).collect();
                return format!("Summary of {}:\n\n{}", self.display_as, lines.join("\n"));
            }
        }
        match &self.result {
            SummaryResult::Number(n) => {
                format!("Summary of {}: {}", self.display_as, format_number(*n))
            }
            SummaryResult::Counts(counts) if counts.is_empty() => format!(
                "Summary of {}:\n\n   No aggregate summary could be computed",
                self.display_as
            ),
            SummaryResult::Counts(counts) => {
                let width = counts
                    .iter()
                    .map(|(value, _)| value.chars().count())
                    .max()
                    .unwrap_or(0);
                let lines: Vec<String> = counts
                    .iter()
                    .map(|(value, count)| format!("   {value:>width$} = {count}"))
                    .collect();
                format!("Summary of {}:\n\n{}", self.display_as, lines.join("\n"))
            }
        }
    }
}

/// Whole numbers without a fraction; others to at most two decimals, or
/// two significant digits when two decimals would show a small number as 0.
fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        return format!("{n:.0}");
    }
    let mut decimals = 2;
    if n != 0.0 && n.abs() < 0.005 {
        // 0.0048: log10 is -2.3, so four decimals keep two digits.
        decimals = (1 - n.abs().log10().floor() as i64).clamp(2, 20) as usize;
    }
    let text = format!("{n:.decimals$}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Formats `args` by a printf-style `format`, as Ruby's `String#%` and Go's
/// `fmt.Sprintf` do for the directives DDL formats use: `%s` (and `%v`),
/// `%d` and `%i`, `%f`, `%e`, `%g`, `%x`, `%o`, `%b`, `%c` and `%%`, with
/// the flags `-`, `+`, space, `0` and `#`, a width and a precision. A
/// directive without an argument shows as `%!d(MISSING)`, Go's way; an
/// unknown one is copied as written.
///
/// ```
/// use muster_protocol::aggregate::printf;
/// use serde_json::json;
/// assert_eq!(printf("Average: %0.2f", &[json!(1.005_f64 + 2.0)]), "Average: 3.00");
/// assert_eq!(printf("%-6s|%3d", &[json!("ok"), json!(7)]), "ok    |  7");
/// ```
pub fn printf(format: &str, args: &[Value]) -> String {
    let chars: Vec<char> = format.chars().collect();
    let mut out = String::new();
    let mut next = args.iter();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '%' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        let mut spec = Spec::default();
        while let Some(&flag) = chars.get(i).filter(|c| "-+ 0#".contains(**c)) {
            match flag {
                '-' => spec.left = true,
                '+' => spec.plus = true,
                ' ' => spec.space = true,
                '0' => spec.zero = true,
                _ => spec.alternate = true,
            }
            i += 1;
        }
        let mut width = String::new();
        while let Some(&d) = chars.get(i).filter(|c| c.is_ascii_digit()) {
            width.push(d);
            i += 1;
        }
        spec.width = width.parse().unwrap_or(0).min(1000);
        if chars.get(i) == Some(&'.') {
            i += 1;
            let mut precision = String::new();
            while let Some(&d) = chars.get(i).filter(|c| c.is_ascii_digit()) {
                precision.push(d);
                i += 1;
            }
            spec.precision = Some(precision.parse().unwrap_or(0).min(100));
        }
        let Some(&verb) = chars.get(i) else {
            out.extend(&chars[start..]);
            break;
        };
        i += 1;
        if verb == '%' {
            out.push('%');
            continue;
        }
        if !"svdiufeEgGxXobc".contains(verb) {
            out.extend(&chars[start..i]);
            continue;
        }
        match next.next() {
            Some(arg) => out.push_str(&spec.apply(verb, arg)),
            None => out.push_str(&format!("%!{verb}(MISSING)")),
        }
    }
    out
}

/// One printf directive's flags, width and precision.
#[derive(Default)]
struct Spec {
    left: bool,
    plus: bool,
    space: bool,
    zero: bool,
    alternate: bool,
    width: usize,
    precision: Option<usize>,
}

impl Spec {
    fn apply(&self, verb: char, arg: &Value) -> String {
        let numeric = !matches!(verb, 's' | 'v' | 'c');
        let body = match verb {
            's' | 'v' => {
                let text = text(arg);
                match self.precision {
                    Some(p) => text.chars().take(p).collect(),
                    None => text,
                }
            }
            'c' => match arg {
                Value::Number(n) => n
                    .as_u64()
                    .and_then(|c| char::from_u32(c as u32))
                    .map(String::from)
                    .unwrap_or_default(),
                other => text(other).chars().take(1).collect(),
            },
            'd' | 'i' | 'u' => self.signed(integer(arg).to_string()),
            'x' | 'X' | 'o' | 'b' => {
                let n = integer(arg);
                let magnitude = n.unsigned_abs();
                let (digits, prefix) = match verb {
                    'x' => (format!("{magnitude:x}"), "0x"),
                    'X' => (format!("{magnitude:X}"), "0X"),
                    'o' => (format!("{magnitude:o}"), "0"),
                    _ => (format!("{magnitude:b}"), "0b"),
                };
                let digits = if self.alternate {
                    format!("{prefix}{digits}")
                } else {
                    digits
                };
                self.signed(if n < 0 { format!("-{digits}") } else { digits })
            }
            'f' => self.signed(format!("{:.*}", self.precision.unwrap_or(6), float(arg))),
            'e' | 'E' => {
                let text = exponent(float(arg), self.precision.unwrap_or(6));
                self.signed(if verb == 'E' {
                    text.to_uppercase()
                } else {
                    text
                })
            }
            _ => {
                let text = general(float(arg), self.precision.unwrap_or(6), self.alternate);
                self.signed(if verb == 'G' {
                    text.to_uppercase()
                } else {
                    text
                })
            }
        };
        self.pad(body, numeric)
    }

    /// `+` or space before a non-negative number when asked.
    fn signed(&self, text: String) -> String {
        if text.starts_with('-') {
            text
        } else if self.plus {
            format!("+{text}")
        } else if self.space {
            format!(" {text}")
        } else {
            text
        }
    }

    fn pad(&self, body: String, numeric: bool) -> String {
        let len = body.chars().count();
        if len >= self.width {
            return body;
        }
        let fill = self.width - len;
        if self.left {
            format!("{body}{}", " ".repeat(fill))
        } else if self.zero && numeric {
            let sign_len = usize::from(body.starts_with(['-', '+', ' ']));
            let (sign, digits) = body.split_at(sign_len);
            format!("{sign}{}{digits}", "0".repeat(fill))
        } else {
            format!("{}{body}", " ".repeat(fill))
        }
    }
}

/// A value as a whole number for `%d`: floats are cut towards zero.
fn integer(value: &Value) -> i64 {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f.trunc() as i64))
            .unwrap_or_default(),
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .ok()
            .or_else(|| parse_float(s).map(|f| f.trunc() as i64))
            .unwrap_or_default(),
        Value::Bool(b) => i64::from(*b),
        _ => 0,
    }
}

fn float(value: &Value) -> f64 {
    number(value).unwrap_or_default()
}

/// `%e`: one digit, the fraction, `e`, a sign and at least two digits.
fn exponent(n: f64, precision: usize) -> String {
    let text = format!("{n:.precision$e}");
    match text.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(digits) => ('-', digits),
                None => ('+', exp),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => text,
    }
}

/// `%g`: `%e` for very small or large numbers, else `%f`, trailing zeros
/// cut unless `#`.
fn general(n: f64, precision: usize, keep_zeros: bool) -> String {
    let precision = precision.max(1);
    if n == 0.0 || !n.is_finite() {
        return format!("{n}");
    }
    let exp = n.abs().log10().floor() as i64;
    let trim = |text: String| {
        if keep_zeros || !text.contains('.') {
            text
        } else {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    };
    if exp < -4 || exp >= precision as i64 {
        let text = exponent(n, precision - 1);
        match text.split_once('e') {
            Some((mantissa, rest)) => format!("{}e{rest}", trim(mantissa.to_string())),
            None => text,
        }
    } else {
        let decimals = (precision as i64 - 1 - exp).max(0) as usize;
        trim(format!("{n:.decimals$}"))
    }
}
