//! `--filter-replies EXPR`: a jq expression, compiled and run by jaq, that
//! keeps the replies for which it is true — muster's built-in `| jgrep`.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data, unwrap_valr, Compiler, Ctx, ValT, Vars};
use jaq_json::Val;
use serde::Deserialize;
use serde_json::Value;

/// A compiled jq expression over reply objects (the `--json` reply shape).
pub(crate) struct ReplyFilter {
    filter: jaq_core::Filter<data::JustLut<Val>>,
}

impl ReplyFilter {
    /// Compiles `code` with jq's standard library; the error names what
    /// jaq expected and where.
    pub(crate) fn new(code: &str) -> anyhow::Result<ReplyFilter> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs());
        let arena = Arena::default();
        let loader = Loader::new(defs);
        let modules = loader
            .load(&arena, File { code, path: () })
            .map_err(|errors| {
                let messages: Vec<String> = errors
                    .into_iter()
                    .flat_map(|(_, error)| load_messages(code, error))
                    .collect();
                bad(code, &messages)
            })?;
        let filter = Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|errors| {
                let messages: Vec<String> = errors
                    .into_iter()
                    .flat_map(|(_, undefined)| undefined)
                    .map(|(name, kind)| format!("undefined {} {name:?}", kind.as_str()))
                    .collect();
                bad(code, &messages)
            })?;
        Ok(ReplyFilter { filter })
    }

    /// Whether the expression's first output for `reply` is truthy (neither
    /// `false` nor `null`). No output, or an error, is false.
    pub(crate) fn keeps(&self, reply: &Value) -> Result<bool, String> {
        let input = Val::deserialize(reply).map_err(|e| e.to_string())?;
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        let first = self.filter.id.run((ctx, input)).map(unwrap_valr).next();
        match first {
            None => Ok(false),
            Some(Ok(value)) => Ok(value.as_bool()),
            Some(Err(e)) => Err(e.to_string()),
        }
    }
}

fn bad(code: &str, messages: &[String]) -> anyhow::Error {
    anyhow::anyhow!(
        "--filter-replies {code:?} is not a valid jq expression: {}",
        messages.join("; ")
    )
}

/// jaq's lex and parse errors as `expected X at offset N` lines.
fn load_messages(code: &str, error: jaq_core::load::Error<&str>) -> Vec<String> {
    use jaq_core::load::Error;
    let at = |found: &str| {
        let offset = (found.as_ptr() as usize).saturating_sub(code.as_ptr() as usize);
        if found.is_empty() {
            "at the end".to_string()
        } else {
            format!(
                "at {:?} (offset {offset})",
                found.chars().take(12).collect::<String>()
            )
        }
    };
    match error {
        Error::Io(errors) => errors
            .into_iter()
            .map(|(path, e)| format!("{path}: {e}"))
            .collect(),
        Error::Lex(errors) => errors
            .into_iter()
            .map(|(expect, found)| format!("expected {} {}", expect.as_str(), at(found)))
            .collect(),
        Error::Parse(errors) => errors
            .into_iter()
            .map(|(expect, found)| format!("expected {} {}", expect.as_str(), at(found)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_what_the_expression_says() {
        let reply = json!({"sender": "node1", "statuscode": 0, "data": {"ensure": "2.3.4"}});
        let same = ReplyFilter::new(r#".data.ensure == "2.3.4""#).unwrap();
        let other = ReplyFilter::new(r#".data.ensure != "2.3.4""#).unwrap();
        assert_eq!(same.keeps(&reply), Ok(true));
        assert_eq!(other.keeps(&reply), Ok(false));
        // Truthy, not only `true`; `empty` and `null` are false.
        assert_eq!(ReplyFilter::new(".data").unwrap().keeps(&reply), Ok(true));
        assert_eq!(
            ReplyFilter::new(".nothing").unwrap().keeps(&reply),
            Ok(false)
        );
        assert_eq!(ReplyFilter::new("empty").unwrap().keeps(&reply), Ok(false));
        let regex = ReplyFilter::new(r#".sender | test("^node[0-9]$")"#).unwrap();
        assert_eq!(regex.keeps(&reply), Ok(true));
        assert!(ReplyFilter::new(".data.ensure + 1")
            .unwrap()
            .keeps(&reply)
            .is_err());
    }

    #[test]
    fn bad_expressions_say_why() {
        let err = ReplyFilter::new(".data.ensure ==")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not a valid jq expression"), "{err}");
        let err = ReplyFilter::new("nosuchfunction(1)")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("undefined filter \"nosuchfunction\""), "{err}");
    }
}
