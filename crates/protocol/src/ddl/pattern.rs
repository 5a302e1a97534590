//! DDL validation regexes written for Go (Choria) or Ruby (MCollective),
//! run by Rust's `regex` crate.
//!
//! The three dialects share most syntax; where they differ a DDL pattern
//! is translated, not refused: a `{` that starts no repetition is a
//! literal (`^{.+}$`), `\d`, `\w`, `\s` and `\b` are ASCII as in Go and
//! Ruby, Ruby's `\h` and `\Z` and Go's `\Q...\E` work, and inside a class
//! `[`, `&&`, `--` and `~~` are literals as they are there. Matching stays
//! linear-time, so a hostile input cannot stall a node; lookaround and
//! backreferences (Ruby only, not valid in Go either) are refused with
//! the engine's reason. `^` and `$` anchor the whole text, as in Go.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use regex::Regex;

/// A DDL pattern compiled, or why it cannot be.
pub(crate) fn compile(pattern: &str) -> Result<Regex, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Result<Regex, String>>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(found) = cache.get(pattern) {
        return found.clone();
    }
    // A bound on memory when DDLs (or hostile ones) bring many patterns.
    if cache.len() >= 256 {
        cache.clear();
    }
    let compiled = Regex::new(&translate(pattern)).map_err(|e| reason(&e));
    cache.insert(pattern.to_string(), compiled.clone());
    compiled
}

/// The syntax error's last line says what is wrong; the lines above
/// draw the pattern with a caret, which does not fit a status message.
fn reason(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().last().unwrap_or_default().trim();
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

const DIGIT: &str = "0-9";
const WORD: &str = "0-9A-Za-z_";
const SPACE: &str = r"\t\n\f\r ";
const HEX: &str = "0-9a-fA-F";

/// The same pattern in the `regex` crate's syntax.
pub(crate) fn translate(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut in_class = false;
    let mut class_start = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            let Some(&next) = chars.get(i + 1) else {
                // A trailing backslash: let the engine say so.
                out.push('\\');
                break;
            };
            i += 2;
            class_start = false;
            if next == 'Q' && !in_class {
                // Go's \Q...\E: everything up to \E (or the end) is literal.
                let rest: String = chars[i..].iter().collect();
                let (literal, consumed) = match rest.find("\\E") {
                    Some(end) => (&rest[..end], end + 2),
                    None => (rest.as_str(), rest.len()),
                };
                out.push_str(&regex::escape(literal));
                i += rest[..consumed].chars().count();
                continue;
            }
            let class = |set: &str, negated: bool| match (in_class, negated) {
                (true, false) => set.to_string(),
                (_, true) => format!("[^{set}]"),
                (false, false) => format!("[{set}]"),
            };
            match next {
                'd' => out.push_str(&class(DIGIT, false)),
                'D' => out.push_str(&class(DIGIT, true)),
                'w' => out.push_str(&class(WORD, false)),
                'W' => out.push_str(&class(WORD, true)),
                's' => out.push_str(&class(SPACE, false)),
                'S' => out.push_str(&class(SPACE, true)),
                'h' => out.push_str(&class(HEX, false)),
                'H' => out.push_str(&class(HEX, true)),
                'b' if !in_class => out.push_str(r"(?-u:\b)"),
                'B' if !in_class => out.push_str(r"(?-u:\B)"),
                // Ruby's end of text, or before a final line break.
                'Z' if !in_class => out.push_str(r"(?:\n?\z)"),
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
            continue;
        }
        if in_class {
            match c {
                ']' if !class_start => {
                    in_class = false;
                    out.push(']');
                }
                '[' if chars.get(i + 1) == Some(&':') => {
                    // A POSIX class such as [:alpha:], copied whole.
                    let rest: String = chars[i..].iter().collect();
                    match rest.find(":]") {
                        Some(end) => {
                            out.push_str(&rest[..end + 2]);
                            i += rest[..end + 2].chars().count();
                            class_start = false;
                            continue;
                        }
                        None => out.push_str(r"\["),
                    }
                }
                // Literals in Go and Ruby; set operators or nesting in Rust.
                '[' => out.push_str(r"\["),
                '&' => out.push_str(r"\&"),
                '~' => out.push_str(r"\~"),
                '-' if chars.get(i + 1) == Some(&'-') => out.push_str(r"\-"),
                ']' => out.push_str(r"\]"),
                other => out.push(other),
            }
            class_start = false;
            i += 1;
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                out.push('[');
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                // A `]` first in a class is a literal.
                class_start = true;
            }
            '{' if !is_repetition(&chars[i..]) => out.push_str(r"\{"),
            '}' if !out_ends_in_open_repetition(&out) => out.push_str(r"\}"),
            other => out.push(other),
        }
        i += 1;
    }
    out
}

/// Whether `{...` starts a counted repetition `{n}`, `{n,}` or `{n,m}`;
/// anything else is a literal brace in Go and Ruby.
fn is_repetition(rest: &[char]) -> bool {
    let mut digits = 0;
    let mut i = 1;
    while rest.get(i).is_some_and(char::is_ascii_digit) {
        digits += 1;
        i += 1;
    }
    if digits == 0 {
        return false;
    }
    if rest.get(i) == Some(&',') {
        i += 1;
        while rest.get(i).is_some_and(char::is_ascii_digit) {
            i += 1;
        }
    }
    rest.get(i) == Some(&'}')
}

/// Whether the translated text so far ends inside `{n,m` (so this `}`
/// closes a repetition).
fn out_ends_in_open_repetition(out: &str) -> bool {
    let Some(open) = out.rfind('{') else {
        return false;
    };
    if out[..open].ends_with('\\') {
        return false;
    }
    let inner = &out[open + 1..];
    !inner.is_empty() && inner.chars().all(|c| c.is_ascii_digit() || c == ',')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_and_ruby_patterns_mean_the_same_here() {
        // (pattern, text, matches)
        let cases: &[(&str, &str, bool)] = &[
            ("^{.+}$", r#"{"a":"b"}"#, true),
            ("^{.+}$", "a", false),
            ("^a{2}$", "aa", true),
            ("^a{2,}$", "aaa", true),
            ("^a{1,2}$", "aaa", false),
            ("^a{,2}$", "a{,2}", true),
            ("^x}$", "x}", true),
            (r"^\d+$", "١٢", false),
            (r"^\d+$", "12", true),
            (r"^\w+$", "é", false),
            (r"^[\w.-]+$", "a-b.c", true),
            (r"^[^\d]+$", "abc", true),
            (r"^[\W]+$", "a", false),
            (r"\bword\b", "a word here", true),
            (r"^\h+$", "beef", true),
            (r"^\h+$", "xyz", false),
            (r"\Aabc\Z", "abc\n", true),
            (r"\Aabc\z", "abc\n", false),
            (r"^\Qa.b\E$", "a.b", true),
            (r"^\Qa.b\E$", "axb", false),
            ("^[[a]+$", "[a[", true),
            ("^[a&&b]+$", "a&b", true),
            ("^[]a]+$", "]a", true),
            ("^[[:alpha:]]+$", "abc", true),
            (r"^\/path$", "/path", true),
            ("^a$", "a\nb", false),
        ];
        for (pattern, text, want) in cases {
            let regex = compile(pattern)
                .unwrap_or_else(|e| panic!("{pattern} ({}) fails: {e}", translate(pattern)));
            assert_eq!(
                regex.is_match(text),
                *want,
                "{pattern} ({}) on {text:?}",
                translate(pattern)
            );
        }
    }

    #[test]
    fn invalid_patterns_say_why() {
        for pattern in ["(a", "a(?=b)", "(a)\\1"] {
            let err = compile(pattern).unwrap_err();
            assert!(!err.is_empty() && !err.contains('\n'), "{pattern}: {err}");
        }
    }
}
