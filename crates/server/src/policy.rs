//! Authorization: which caller may run which action, in MCollective's
//! actionpolicy file format.
//!
//! A node looks for `<dir>/<agent>.policy` (`plugin.actionpolicy.dir`).
//! Lines are `policy default allow|deny` (at most once) and rules
//!
//! ```text
//! allow|deny <TAB> <callers> <TAB> <actions> <TAB> <facts> <TAB> <classes>
//! allow|deny <TAB> <callers> <TAB> <actions> <TAB> <expression>
//! ```
//!
//! Fields are separated by tabs (a run of tabs is one separator), words
//! within a field by blanks; a line without tabs is split on blanks, one
//! word a field. Parsing is strict, because a rule misread is a rule
//! silently not applied: the first field is exactly `allow` or `deny`
//! (`deny alice<TAB>stop<TAB>*<TAB>*`, a space where a tab belongs, is an
//! error, not a rule against a caller named `stop`), a rule has 4 or 5
//! non-blank fields, `*` stands alone, and comments (`#`) have lines of
//! their own. Lines end with `\n` or `\r\n`.
//!
//! The first rule whose fields all hold decides; when none does, the
//! policy default does (deny when the file does not say). Callers are
//! matched against the name of the certificate that signed the request,
//! never against the caller the request claims to be: by name, by
//! Choria's `/regex/`, or by a group of MCollective's `<dir>/groups` file
//! ([`Groups`]). The facts and classes fields, and the 4-field form's
//! condition, are `-S` compound expressions when they look like one
//! (MCollective's test), data plugins included; a rule naming a data
//! plugin the node does not have never matches, and is warned about.
//!
//! A policy file (or the groups file) with a line that does not parse
//! denies every request to its agent (fail closed) until it is fixed, and
//! the error (file and line) is logged when the file is read: at start-up
//! and after every change ([`Watched`]).
//!
//! ```
//! use muster_server::policy::Policy;
//! let policy = Policy::parse(
//!     "policy default deny\nallow\talice bob\tstatus restart\trole=web\t*\n",
//!     "service.policy",
//! )
//! .unwrap();
//! assert_eq!(policy.rules(), 1);
//! let err = Policy::parse("allow alice", "x.policy").unwrap_err();
//! assert_eq!(err.line, 1);
//! let err = Policy::parse("policy default allow\ndeny alice\tstop\t*\t*", "x.policy");
//! assert_eq!(err.unwrap_err().line, 2);
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use muster_protocol::config::{Config, ConfigError};
use muster_protocol::{Compound, FactFilter, FilterError, NodeView, Pattern};

use crate::watched::{Source, Watched};

mod groups;
pub use groups::Groups;

/// The reply status message of a denied request (MCollective's).
pub const DENIED: &str = "You are not authorized to call this agent or action";

/// Where policies live and what applies when an agent has none.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `plugin.actionpolicy.dir`.
    pub dir: PathBuf,
    /// The policy (file name without `.policy`) for agents without their
    /// own: `plugin.actionpolicy.default_name` when `enable_default` is on.
    pub default_policy: Option<String>,
    /// `plugin.actionpolicy.allow_unconfigured`: whether an agent with no
    /// policy file at all (nor a default one) may be called.
    pub allow_unconfigured: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            dir: PathBuf::from("/etc/muster/policies"),
            default_policy: None,
            allow_unconfigured: true,
        }
    }
}

impl Settings {
    /// Reads the `plugin.actionpolicy.*` settings.
    pub fn from_config(config: &Config) -> Result<Settings, ConfigError> {
        let defaults = Settings::default();
        let default_name = config
            .get("plugin.actionpolicy.default_name")
            .unwrap_or("default");
        if default_name.contains(['/', '\\']) || default_name.starts_with('.') {
            return Err(config.error(
                "plugin.actionpolicy.default_name",
                format!("{default_name:?} must be a file name without '/' or a leading '.'"),
            ));
        }
        let enable_default = config
            .flag("plugin.actionpolicy.enable_default")?
            .unwrap_or(false);
        Ok(Settings {
            dir: config
                .get("plugin.actionpolicy.dir")
                .map(PathBuf::from)
                .unwrap_or(defaults.dir),
            default_policy: enable_default.then(|| default_name.to_string()),
            allow_unconfigured: config
                .flag("plugin.actionpolicy.allow_unconfigured")?
                .unwrap_or(defaults.allow_unconfigured),
        })
    }
}

/// A policy file line that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {problem}")]
pub struct PolicyError {
    /// The file, as named to [`Policy::parse`].
    pub file: String,
    /// The line, counting from 1.
    pub line: usize,
    /// What is wrong with it.
    #[source]
    pub problem: LineError,
}

/// What is wrong with one line of a policy file.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// A `\r` that does not end the line.
    #[error("a carriage return (\\r) inside a line: lines end with \\n or \\r\\n")]
    CarriageReturn,
    /// A `#` after the start of the line.
    #[error(
        "`#` after the start of a line: comments must be on their own line \
         (a regular expression can write `#` as \\x23); found {0:?}"
    )]
    TrailingComment(String),
    /// A `policy` line other than `policy default allow|deny`.
    #[error("expected `policy default allow` or `policy default deny`, found {0:?}")]
    BadDefault(String),
    /// A second `policy default` line.
    #[error("a second `policy default` line (line {first} has the first): a file has at most one")]
    SecondDefault {
        /// The line of the first one.
        first: usize,
    },
    /// A line that is neither a default nor a rule.
    #[error(
        "expected `policy default allow|deny` or a rule starting with `allow` or `deny`, \
         found {0:?}"
    )]
    NotARule(String),
    /// Only blanks between two tabs.
    #[error("field {0} is empty (only blanks between two tabs); write `*` for \"any\"")]
    EmptyField(usize),
    /// The first field is not exactly `allow` or `deny`.
    #[error("the first field must be exactly `allow` or `deny`, found {found:?}{hint}")]
    FirstField {
        /// The first field.
        found: String,
        /// A hint when it holds blanks.
        hint: &'static str,
    },
    /// Fewer than 4 or more than 5 fields.
    #[error(
        "a rule is `allow|deny <callers> <actions> <facts> <classes>` or \
         `allow|deny <callers> <actions> <expression>`; found {count} fields ({fields}){hint}"
    )]
    FieldCount {
        /// How many fields there are.
        count: usize,
        /// The fields, quoted and comma-separated.
        fields: String,
        /// A hint when the line has no tabs.
        hint: &'static str,
    },
    /// `*` in a list of words.
    #[error(
        "{what} {field:?}: `*` stands alone, not in a list \
         (is there a space where a tab belongs?)"
    )]
    StarInList {
        /// Which field.
        what: &'static str,
        /// The field.
        field: String,
    },
    /// A caller word that starts with `/` but is not a usable `/regex/`.
    #[error("caller {caller:?}: {problem}")]
    CallerRegex {
        /// The word.
        caller: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A caller `/regex/` that does not compile.
    #[error("caller {caller:?}: {source}")]
    CallerRegexSyntax {
        /// The word.
        caller: String,
        /// What the regex compiler said.
        source: FilterError,
    },
    /// A fact comparison in the classes field of a 5-field rule.
    #[error(
        "classes {0:?}: a fact comparison where a class belongs; facts go in the \
         fourth field (or write a compound expression such as `role=web and base`)"
    )]
    FactInClasses(String),
    /// A groups file line whose first word is not a group name.
    #[error(
        "expected `<group> <caller> <caller> ...` with a group name of letters, digits, \
         `_`, `.` or `-`, found {0:?}"
    )]
    GroupName(String),
    /// A group named on two lines.
    #[error("group {name:?} again (line {first} has it first): a group is one line")]
    GroupTwice {
        /// The group.
        name: String,
        /// The line of the first one.
        first: usize,
    },
    /// A group member that is not a caller name.
    #[error(
        "group {group:?}: member {member:?} is not a caller name \
         (`*` and `/regex/` belong in a policy's caller field)"
    )]
    GroupMember {
        /// The group.
        group: String,
        /// The member.
        member: String,
    },
    /// A fact comparison that does not parse.
    #[error("fact {fact:?}: {source}")]
    Fact {
        /// The comparison.
        fact: String,
        /// Why it does not parse.
        source: FilterError,
    },
    /// A class pattern that does not parse.
    #[error("class {class:?}: {source}")]
    Class {
        /// The pattern.
        class: String,
        /// Why it does not parse.
        source: FilterError,
    },
    /// A compound expression that does not parse.
    #[error("expression {expression:?}: {source}")]
    Expression {
        /// The expression.
        expression: String,
        /// Why it does not parse.
        source: FilterError,
    },
}

/// One parsed policy file.
#[derive(Debug)]
pub struct Policy {
    file: String,
    default_allow: bool,
    rules: Vec<Rule>,
    groups: Arc<Groups>,
}

#[derive(Debug)]
struct Rule {
    line: usize,
    allow: bool,
    /// `None` is `*`.
    callers: Option<Vec<Caller>>,
    actions: Option<Vec<String>>,
    condition: Condition,
}

/// One word of a rule's caller field.
#[derive(Debug)]
enum Caller {
    /// A caller name (`alice.mcollective`, `cert=alice.mcollective`) or a
    /// group of the groups file.
    Name(String),
    /// `/regex/`, matched against the certificate name; `choria_form`:
    /// also against Choria's caller id `choria=<name>` (the regex has an `=`).
    Regex { regex: Pattern, choria_form: bool },
}

#[derive(Debug)]
enum Condition {
    Always,
    /// Every fact comparison and every class must hold.
    All {
        facts: Vec<FactFilter>,
        classes: Vec<Pattern>,
    },
    Compound(Compound),
    /// The 5-field form: the facts field and the classes field must both
    /// hold; either may be a compound expression.
    Both(Box<Condition>, Box<Condition>),
    /// The rule names a data plugin this node does not have: it never
    /// matches (MCollective's "could not call Data function").
    UnknownPlugin(String),
}

/// The verdict on one request, and which line (or default) gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Whether the request may run.
    pub allowed: bool,
    /// The file and line (or default) that decided, for the log and the reply.
    pub reason: String,
}

impl Decision {
    fn new(allowed: bool, reason: impl Into<String>) -> Decision {
        Decision {
            allowed,
            reason: reason.into(),
        }
    }
}

impl Policy {
    /// Parses a policy file's text; `file` names it in errors.
    ///
    /// Lines end with `\n` or `\r\n`. A line whose first non-blank
    /// character is `#` is a comment; blank lines are ignored. Every other
    /// line is `policy default allow|deny` (at most once) or a rule, and
    /// must parse completely: the first line that does not is the error,
    /// and the caller denies everything the file governs. A rule that
    /// names an unknown data plugin parses (see [`Policy::unknown_plugins`]).
    pub fn parse(text: &str, file: &str) -> Result<Policy, PolicyError> {
        // (the verdict, the line that gave it)
        let mut default: Option<(bool, usize)> = None;
        let mut rules = Vec::new();
        for (line, trimmed) in lines(text, file)? {
            let error = |problem: LineError| PolicyError {
                file: file.to_string(),
                line,
                problem,
            };
            let first = trimmed.split_whitespace().next().unwrap_or("");
            match first {
                "policy" => {
                    let words: Vec<&str> = trimmed.split_whitespace().collect();
                    let allow = match words.as_slice() {
                        ["policy", "default", "allow"] => true,
                        ["policy", "default", "deny"] => false,
                        _ => return Err(error(LineError::BadDefault(trimmed.to_string()))),
                    };
                    if let Some((_, earlier)) = default {
                        return Err(error(LineError::SecondDefault { first: earlier }));
                    }
                    default = Some((allow, line));
                }
                "allow" | "deny" => rules.push(parse_rule(trimmed, line).map_err(error)?),
                _ => return Err(error(LineError::NotARule(first.to_string()))),
            }
        }
        Ok(Policy {
            file: file.to_string(),
            default_allow: default.is_some_and(|(allow, _)| allow),
            rules,
            groups: Arc::new(Groups::default()),
        })
    }

    /// The same policy, with caller words that name a group of `groups`
    /// matching the group's members (MCollective's `policies/groups`).
    pub fn with_groups(mut self, groups: Arc<Groups>) -> Policy {
        self.groups = groups;
        self
    }

    /// How many rules the file has.
    pub fn rules(&self) -> usize {
        self.rules.len()
    }

    /// The rules that name a data plugin the node does not have, as (line,
    /// plugin): they never match, and the node warns about each at load.
    pub fn unknown_plugins(&self) -> Vec<(usize, String)> {
        self.rules
            .iter()
            .filter_map(|rule| rule.condition.unknown_plugin().map(|p| (rule.line, p)))
            .collect()
    }

    /// Whether any rule needs a data plugin (which reads files and /proc).
    pub fn uses_data(&self) -> bool {
        self.rules.iter().any(|rule| rule.condition.uses_data())
    }

    /// Whether `caller` (the verified certificate name) may run `action` on `node`.
    pub fn decide(&self, caller: &str, action: &str, node: &dyn NodeView) -> Decision {
        for rule in &self.rules {
            let caller_matches = rule
                .callers
                .as_ref()
                .is_none_or(|callers| callers.iter().any(|c| c.matches(caller, &self.groups)));
            let action_matches = rule
                .actions
                .as_ref()
                .is_none_or(|actions| actions.iter().any(|a| a == action));
            if !caller_matches || !action_matches {
                continue;
            }
            let at = format!("{}:{}", self.file, rule.line);
            match rule.condition.holds(node) {
                Ok(true) => return Decision::new(rule.allow, at),
                Ok(false) => continue,
                // A rule that cannot be evaluated here must not let the
                // request fall through to a more permissive line.
                Err(e) => return Decision::new(false, format!("{at}: {e}")),
            }
        }
        Decision::new(self.default_allow, format!("{}: policy default", self.file))
    }
}

/// The non-blank, non-comment lines of a policy or groups file, trimmed,
/// with their numbers; a stray `\r` or a `#` after the start is an error.
fn lines<'a>(text: &'a str, file: &str) -> Result<Vec<(usize, &'a str)>, PolicyError> {
    let mut lines = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        let error = |problem: LineError| PolicyError {
            file: file.to_string(),
            line,
            problem,
        };
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.contains('\r') {
            return Err(error(LineError::CarriageReturn));
        }
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if trimmed.contains('#') {
            return Err(error(LineError::TrailingComment(trimmed.to_string())));
        }
        lines.push((line, trimmed));
    }
    Ok(lines)
}

impl Caller {
    fn parse(word: &str) -> Result<Caller, LineError> {
        if !word.starts_with('/') {
            return Ok(Caller::Name(word.to_string()));
        }
        let problem = |problem| LineError::CallerRegex {
            caller: word.to_string(),
            problem,
        };
        if word.len() < 2 || !word.ends_with('/') {
            return Err(problem(
                "a caller starting with `/` is a /regex/ and ends with `/`",
            ));
        }
        if word == "//" {
            return Err(problem("an empty /regex/ matches every caller; write `*`"));
        }
        let regex = Pattern::parse(word).map_err(|source| LineError::CallerRegexSyntax {
            caller: word.to_string(),
            source,
        })?;
        Ok(Caller::Regex {
            regex,
            choria_form: word.contains('='),
        })
    }

    fn matches(&self, caller: &str, groups: &Groups) -> bool {
        match self {
            Caller::Name(word) => caller_is(word, caller) || groups.contains(word, caller),
            Caller::Regex { regex, choria_form } => {
                regex.matches(caller)
                    || (*choria_form && regex.matches(&format!("choria={caller}")))
            }
        }
    }
}

/// `alice` matches the key name; so do MCollective's `cert=alice` and
/// `uid=alice` (whatever precedes the `=` is ignored).
fn caller_is(pattern: &str, caller: &str) -> bool {
    pattern == caller
        || pattern
            .split_once('=')
            .is_some_and(|(_, name)| name == caller)
}

impl Condition {
    fn holds(&self, node: &dyn NodeView) -> Result<bool, muster_protocol::DataError> {
        match self {
            Condition::Always => Ok(true),
            Condition::All { facts, classes } => {
                Ok(facts.iter().all(|f| f.matches(node.fact(&f.fact).as_ref()))
                    && classes.iter().all(|p| node.has_class(&|c| p.matches(c))))
            }
            Condition::Compound(compound) => compound.expr.eval(node),
            Condition::Both(facts, classes) => Ok(facts.holds(node)? && classes.holds(node)?),
            Condition::UnknownPlugin(_) => Ok(false),
        }
    }

    fn uses_data(&self) -> bool {
        match self {
            Condition::Compound(compound) => compound.expr.uses_data(),
            Condition::Both(a, b) => a.uses_data() || b.uses_data(),
            _ => false,
        }
    }

    fn unknown_plugin(&self) -> Option<String> {
        match self {
            Condition::UnknownPlugin(plugin) => Some(plugin.clone()),
            Condition::Both(a, b) => a.unknown_plugin().or_else(|| b.unknown_plugin()),
            _ => None,
        }
    }
}

/// Splits a rule into its fields and parses them.
///
/// A line with a tab is MCollective's format: fields are separated by
/// tabs — a run of tabs is one separator (MCollective's `\t+`), so columns
/// may be aligned — blanks around a field are ignored, and within a field
/// several words are separated by blanks. The first field must be exactly
/// `allow` or `deny` (`deny alice<TAB>stop…` is an error, not a rule
/// against a caller named `stop`), and no field may be blank. A line
/// without tabs is split on blanks, so each of its fields is one word.
fn parse_rule(line: &str, number: usize) -> Result<Rule, LineError> {
    let tabbed = line.contains('\t');
    let fields: Vec<&str> = if tabbed {
        let mut fields = Vec::new();
        for piece in line.split('\t').filter(|piece| !piece.is_empty()) {
            let field = piece.trim();
            if field.is_empty() {
                return Err(LineError::EmptyField(fields.len() + 1));
            }
            fields.push(field);
        }
        fields
    } else {
        line.split_whitespace().collect()
    };
    let allow = match fields[0] {
        "allow" => true,
        "deny" => false,
        other => {
            let hint = if other.contains(char::is_whitespace) {
                ": fields are separated by tabs; is there a space where a tab belongs?"
            } else {
                ""
            };
            return Err(LineError::FirstField {
                found: other.to_string(),
                hint,
            });
        }
    };
    if !(4..=5).contains(&fields.len()) {
        let hint = if tabbed {
            ""
        } else {
            "; separate fields with tabs when a field lists several words"
        };
        let found: Vec<String> = fields.iter().map(|f| format!("{f:?}")).collect();
        return Err(LineError::FieldCount {
            count: fields.len(),
            fields: found.join(", "),
            hint,
        });
    }
    let callers = match words(fields[1], "callers")? {
        None => None,
        Some(words) => Some(
            words
                .into_iter()
                .map(Caller::parse)
                .collect::<Result<_, _>>()?,
        ),
    };
    let actions = words(fields[2], "actions")?.map(|w| w.into_iter().map(String::from).collect());
    let condition = if fields.len() == 5 {
        // MCollective reads each of the two fields as a compound
        // expression when it looks like one, else as a list.
        let facts = match words(fields[3], "facts")? {
            None => Condition::Always,
            Some(_) if is_compound(fields[3]) => compound(fields[3])?,
            Some(facts) => Condition::All {
                facts: facts
                    .into_iter()
                    .map(|f| FactFilter::parse(f).map_err(|e| fact_error(f, e)))
                    .collect::<Result<_, _>>()?,
                classes: Vec::new(),
            },
        };
        let classes = match words(fields[4], "classes")? {
            None => Condition::Always,
            Some(_) if is_compound(fields[4]) => compound(fields[4])?,
            Some(classes) => Condition::All {
                facts: Vec::new(),
                classes: classes
                    .into_iter()
                    .map(|c| {
                        if c.contains(['=', '<', '>']) && !c.starts_with('/') {
                            return Err(LineError::FactInClasses(fields[4].to_string()));
                        }
                        Pattern::parse(c).map_err(|e| class_error(c, e))
                    })
                    .collect::<Result<_, _>>()?,
            },
        };
        match (facts, classes) {
            (Condition::Always, Condition::Always) => Condition::Always,
            (only, Condition::Always) | (Condition::Always, only) => only,
            (facts, classes) => Condition::Both(Box::new(facts), Box::new(classes)),
        }
    } else {
        match words(fields[3], "condition")? {
            None => Condition::Always,
            Some(_) if is_compound(fields[3]) => compound(fields[3])?,
            Some(words) => {
                // Words without an operator: facts (with one) and classes,
                // all of which must hold, as an `-S` expression joined by
                // `and` would.
                let mut facts = Vec::new();
                let mut classes = Vec::new();
                for word in words {
                    if word.contains(['=', '<', '>']) {
                        facts.push(FactFilter::parse(word).map_err(|e| fact_error(word, e))?);
                    } else {
                        classes.push(Pattern::parse(word).map_err(|e| class_error(word, e))?);
                    }
                }
                Condition::All { facts, classes }
            }
        }
    };
    Ok(Rule {
        line: number,
        allow,
        callers,
        actions,
        condition,
    })
}

/// An `-S` expression. One that calls a data plugin this node does not
/// know makes a rule that never matches (as in MCollective, where the
/// failed call is false) rather than an error that would deny the whole
/// file; everything else that does not parse is an error.
fn compound(field: &str) -> Result<Condition, LineError> {
    match Compound::parse(field) {
        Ok(compound) => Ok(Condition::Compound(compound)),
        Err(source) => match unknown_plugin_at(&source) {
            Some(plugin) => Ok(Condition::UnknownPlugin(plugin)),
            None => Err(LineError::Expression {
                expression: field.to_string(),
                source,
            }),
        },
    }
}

/// The plugin name where the parser stopped, when it stopped at
/// `name(` and `name` is not a data plugin it knows.
fn unknown_plugin_at(error: &FilterError) -> Option<String> {
    let FilterError::Parse(parse) = error else {
        return None;
    };
    let rest = parse.input.get(parse.position..)?;
    let name_len = rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    let (name, after) = rest.split_at(name_len);
    let known = muster_protocol::DATA_PLUGINS
        .iter()
        .any(|(p, _)| *p == name);
    (!name.is_empty() && after.starts_with('(') && !known).then(|| name.to_string())
}

fn fact_error(fact: &str, source: FilterError) -> LineError {
    LineError::Fact {
        fact: fact.to_string(),
        source,
    }
}

fn class_error(class: &str, source: FilterError) -> LineError {
    LineError::Class {
        class: class.to_string(),
        source,
    }
}

/// `*` (`None`), or the field's blank-separated words. `*` stands alone:
/// `* *` or `role=web *` is a field separator typed as a space, not a
/// list, and would otherwise make a class or caller of `*`.
fn words<'a>(field: &'a str, what: &'static str) -> Result<Option<Vec<&'a str>>, LineError> {
    if field == "*" {
        return Ok(None);
    }
    let words: Vec<&str> = field.split_whitespace().collect();
    if words.contains(&"*") {
        return Err(LineError::StarInList {
            what,
            field: field.to_string(),
        });
    }
    Ok(Some(words))
}

/// MCollective's test: a keyword, a negation or parentheses make a field
/// an `-S` expression rather than a list.
fn is_compound(field: &str) -> bool {
    field.contains(['(', ')'])
        || field.split_whitespace().any(|word| {
            matches!(word, "and" | "or" | "not" | "&&" | "||")
                || (word.starts_with('!') && !word.starts_with("!="))
        })
}

/// A policy file as last read.
enum Loaded {
    Missing,
    Ready(Policy),
    /// Unreadable or unparseable: everything is denied.
    Broken(String),
}

/// The groups file, beside the policies (MCollective's `policies/groups`).
pub const GROUPS_FILE: &str = "groups";

/// Reads `path` and the groups file: a policy that cannot be read or
/// parsed, or a groups file that cannot (the policy may name its groups),
/// denies everything. A missing groups file is no groups.
fn load(path: &Path, groups_path: &Path, agent: &str) -> Loaded {
    let text = match read_text(path) {
        Ok(Some(text)) => text,
        Ok(None) => return Loaded::Missing,
        Err(e) => return broken(agent, e),
    };
    let shown = path.display().to_string();
    let policy = match Policy::parse(&text, &shown) {
        Ok(policy) => policy,
        Err(e) => return broken(agent, e.to_string()),
    };
    let groups = match read_text(groups_path) {
        Ok(None) => Groups::default(),
        Ok(Some(text)) => match Groups::parse(&text, &groups_path.display().to_string()) {
            Ok(groups) => groups,
            Err(e) => return broken(agent, e.to_string()),
        },
        Err(e) => return broken(agent, e),
    };
    for (line, plugin) in policy.unknown_plugins() {
        tracing::warn!(
            agent,
            plugin = %plugin,
            at = %format!("{shown}:{line}"),
            "{shown}:{line}: unknown data plugin {plugin:?}: this rule never matches; \
             the file's other rules apply"
        );
    }
    Loaded::Ready(policy.with_groups(Arc::new(groups)))
}

/// A file's text; `None` when it does not exist.
fn read_text(path: &Path) -> Result<Option<String>, String> {
    let shown = path.display();
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| format!("{shown}: not UTF-8 text")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{shown}: {e}")),
    }
}

/// Called once per change of the file (by [`Watched`]), so it logs once.
fn broken(agent: &str, error: String) -> Loaded {
    tracing::error!(agent, %error, "policy file is unusable: every request it governs is denied until it is fixed");
    Loaded::Broken(error)
}

/// A node's policies: one watched file per agent, and the default one.
pub struct Policies {
    /// `None`: no authorization at all (simulated nodes, tests).
    settings: Option<Settings>,
    files: Mutex<HashMap<String, Arc<Source<Loaded>>>>,
}

impl Policies {
    /// Allows everything.
    pub fn none() -> Policies {
        Policies {
            settings: None,
            files: Mutex::new(HashMap::new()),
        }
    }

    /// Reads the policies of `agents` (and the default one) now, so a
    /// broken file is reported at start-up.
    pub fn new<'a>(settings: Settings, agents: impl IntoIterator<Item = &'a str>) -> Policies {
        let policies = Policies {
            settings: Some(settings),
            files: Mutex::new(HashMap::new()),
        };
        for agent in agents {
            policies.file(agent);
        }
        if let Some(name) = policies
            .settings
            .as_ref()
            .and_then(|s| s.default_policy.clone())
        {
            policies.file(&name);
        }
        policies
    }

    /// The watched `<dir>/<name>.policy`. `name` is a known agent's or the
    /// configured default's, never text from a request.
    fn file(&self, name: &str) -> Option<Arc<Source<Loaded>>> {
        let settings = self.settings.as_ref()?;
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let source = files.entry(name.to_string()).or_insert_with(|| {
            let path = settings.dir.join(format!("{name}.policy"));
            let groups = settings.dir.join(GROUPS_FILE);
            let agent = name.to_string();
            let watched = Watched::new(vec![path, groups], move |paths| {
                Ok::<_, std::convert::Infallible>(load(&paths[0], &paths[1], &agent))
            });
            Arc::new(match watched {
                Ok(watched) => Source::Files(watched),
                Err(never) => match never {},
            })
        });
        Some(source.clone())
    }

    /// Whether `caller` (the verified certificate name) may run `agent`'s `action`.
    pub fn check(&self, agent: &str, caller: &str, action: &str, node: &dyn NodeView) -> Decision {
        let Some(settings) = &self.settings else {
            return Decision::new(true, "no authorization configured");
        };
        let mut candidates = vec![agent.to_string()];
        candidates.extend(settings.default_policy.clone());
        for name in candidates {
            let Some(source) = self.file(&name) else {
                continue;
            };
            match &*source.get() {
                Loaded::Missing => continue,
                Loaded::Broken(e) => return Decision::new(false, e.clone()),
                Loaded::Ready(policy) => return decide_off_worker(policy, caller, action, node),
            }
        }
        Decision::new(
            settings.allow_unconfigured,
            format!(
                "no policy file for agent {agent}; allow_unconfigured = {}",
                u8::from(settings.allow_unconfigured)
            ),
        )
    }
}

/// Data plugins read files and /proc, so with them the evaluation leaves
/// the async worker thread (as filters do).
fn decide_off_worker(policy: &Policy, caller: &str, action: &str, node: &dyn NodeView) -> Decision {
    let decide = || policy.decide(caller, action, node);
    let multi_thread = tokio::runtime::Handle::try_current()
        .map(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
        .unwrap_or(false);
    if policy.uses_data() && multi_thread {
        tokio::task::block_in_place(decide)
    } else {
        decide()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    struct View;

    impl NodeView for View {
        fn identity(&self) -> &str {
            "node1"
        }
        fn has_class(&self, matches: &dyn Fn(&str) -> bool) -> bool {
            ["base", "role::web"].iter().any(|c| matches(c))
        }
        fn has_agent(&self, _: &dyn Fn(&str) -> bool) -> bool {
            false
        }
        fn fact(&self, path: &str) -> Option<Value> {
            match path {
                "role" => Some(json!("web")),
                "cores" => Some(json!(8)),
                _ => None,
            }
        }
    }

    fn allowed(text: &str, caller: &str, action: &str) -> bool {
        Policy::parse(text, "t.policy")
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            .decide(caller, action, &View)
            .allowed
    }

    /// Every form the parser accepted before it became strict is still
    /// accepted, and means what it meant.
    #[test]
    fn every_accepted_form_is_still_accepted() {
        let cases = [
            // MCollective's tab-separated forms, and the one-word-a-field
            // blank-separated ones.
            ("allow\talice\t*\t*\t*", "alice", "x", true),
            ("allow alice * * *", "alice", "x", true),
            ("allow alice * * *", "bob", "x", false),
            ("allow alice * *", "alice", "x", true),
            (
                "allow\tcert=alice uid=bob\tstatus\t*\t*",
                "bob",
                "status",
                true,
            ),
            ("allow\talice\tstatus stop\t*\t*", "alice", "start", false),
            ("allow\talice\tstatus   stop\t*\t*", "alice", "stop", true),
            ("allow\t*\t*\trole=web cores>=4\trole::web", "x", "y", true),
            ("allow\t*\t*\trole=db\t*", "x", "y", false),
            ("allow\t*\t*\t*\tbase nosuch", "x", "y", false),
            ("allow\t*\t*\t*\trole::*", "x", "y", true),
            ("allow\t*\t*\t*\t/^role::/", "x", "y", true),
            ("allow\t*\t*\trole=web and not cores<2", "x", "y", true),
            ("allow\t*\t*\t(role=db or base)", "x", "y", true),
            ("allow\t*\t*\t!nosuch && role=web", "x", "y", true),
            ("allow * * role=/^w/", "x", "y", true),
            ("allow\t*\t*\trole=web role::web", "x", "y", true),
            ("allow\t*\t*\t*", "x", "y", true),
            // A run of tabs is one separator (MCollective's `\t+`), so
            // columns may be aligned; blanks around a field do not count.
            ("allow\t\talice\t\t\t*\t*\t\t*", "alice", "x", true),
            ("allow \t alice \t * \t * \t *", "alice", "x", true),
            ("allow\t\t*\t\tstop\t\t*", "a", "stop", true),
            // Leading and trailing blanks, trailing tabs.
            ("  allow\talice\t*\t*\t*", "alice", "x", true),
            ("allow\talice\t*\t*\t*\t\t", "alice", "x", true),
            ("allow\talice\t*\t*\t*   ", "alice", "x", true),
            ("\tallow\talice\t*\t*", "alice", "x", true),
            // `policy default`: anywhere, blanks or tabs between words.
            (
                "policy default allow\ndeny\talice\t*\t*\t*",
                "alice",
                "y",
                false,
            ),
            (
                "policy default allow\ndeny\talice\t*\t*\t*",
                "bob",
                "y",
                true,
            ),
            (
                "deny\talice\t*\t*\t*\npolicy default allow",
                "bob",
                "y",
                true,
            ),
            ("policy\tdefault   allow", "bob", "y", true),
            ("  policy default deny  ", "bob", "y", false),
            // The first matching rule decides.
            ("deny * stop * *\nallow * * * *", "a", "stop", false),
            ("allow * * * *\ndeny * stop * *", "a", "stop", true),
            // Comments and blank lines, indented or not; no rules at all.
            ("# nothing\n\n", "a", "b", false),
            (
                "  # indented\n\t# tabbed\n \t \nallow * * * *",
                "a",
                "b",
                true,
            ),
            ("#allow * * * *", "a", "b", false),
            ("", "a", "b", false),
            // Line ends: `\n`, `\r\n`, none at the end, `\r` at the end.
            (
                "policy default deny\r\nallow\talice\t*\t*\t*\r\n",
                "alice",
                "x",
                true,
            ),
            (
                "policy default allow\r\ndeny\t*\tstop\t*\t*",
                "a",
                "stop",
                false,
            ),
            (
                "policy default allow\r\ndeny\t*\tstop\t*\t*\r",
                "a",
                "stop",
                false,
            ),
            (
                "policy default allow\r\ndeny\t*\tstop\t*\t*\r",
                "a",
                "go",
                true,
            ),
            ("# windows\r\n\r\nallow * * * *\r\n", "a", "b", true),
        ];
        for (text, caller, action, expected) in cases {
            assert_eq!(
                allowed(text, caller, action),
                expected,
                "{text:?} {caller} {action}"
            );
        }
    }

    /// A CRLF file is the same policy as its LF twin, line for line.
    #[test]
    fn crlf_line_ends_are_line_ends() {
        let lf = "# ops\npolicy default deny\n\nallow\talice bob\tstatus\t*\t*\n\
                  deny\t*\tstop\trole=web\t*\nallow\tcarol\t*\trole=web and base\n";
        let crlf = lf.replace('\n', "\r\n");
        let (lf, crlf) = (
            Policy::parse(lf, "t.policy").unwrap(),
            Policy::parse(&crlf, "t.policy").unwrap(),
        );
        assert_eq!(crlf.rules(), 3);
        for (caller, action) in [
            ("alice", "status"),
            ("bob", "stop"),
            ("carol", "stop"),
            ("carol", "start"),
            ("dave", "status"),
        ] {
            assert_eq!(
                lf.decide(caller, action, &View),
                crlf.decide(caller, action, &View),
                "{caller} {action}"
            );
        }
        // Line numbers in errors count CRLF lines too.
        let err = Policy::parse("# a\r\n\r\ndeny alice\tstop\t*\t*\r\n", "t.policy").unwrap_err();
        assert_eq!(err.line, 3, "{err}");
    }

    /// The attack: with `policy default allow`, a space instead of the
    /// first tab (`deny alice<TAB>stop<TAB>*<TAB>*`) used to be read as
    /// "deny the caller named `stop`", so alice's `stop` was allowed.
    #[test]
    fn a_space_where_the_first_tab_belongs_is_an_error_not_a_rule() {
        let text = "# no stopping for alice\npolicy default allow\ndeny alice\tstop\t*\t*\n";
        let err = Policy::parse(text, "service.policy").unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        assert_eq!(
            err.to_string(),
            "service.policy:3: the first field must be exactly `allow` or `deny`, found \
             \"deny alice\": fields are separated by tabs; is there a space where a tab belongs?"
        );
        // The same with five fields, with `allow`, and with other blanks.
        for text in [
            "deny alice\tstop\t*\t*\t*",
            "allow alice\tstop\t*\t*",
            "deny  alice\tstop\t*\t*",
            "deny\u{a0}alice\tstop\t*\t*",
            "deny alice bob\tstop\t*\t*",
        ] {
            let err = Policy::parse(text, "x.policy").unwrap_err();
            assert!(
                err.problem
                    .to_string()
                    .contains("exactly `allow` or `deny`"),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn mistakes_name_their_line() {
        let cases = [
            ("policy default maybe", 1, "policy default allow"),
            ("policy default", 1, "found \"policy default\""),
            ("policy default allow deny", 1, "policy default deny"),
            ("policy allow", 1, "policy default allow"),
            (
                "\npolicy default deny\npolicy default allow",
                3,
                "a second `policy default` line (line 2 has the first)",
            ),
            (
                "policy default deny\npolicy default deny",
                2,
                "a second `policy default` line",
            ),
            ("permit alice * * *", 1, "found \"permit\""),
            ("alow\talice\t*\t*\t*", 1, "found \"alow\""),
            ("Allow\talice\t*\t*\t*", 1, "found \"Allow\""),
            ("allowed\talice\t*\t*\t*", 1, "found \"allowed\""),
            // Field counts: 3 and 6, with tabs or blanks.
            ("allow alice *", 1, "found 3 fields"),
            (
                "allow\talice\t*",
                1,
                "found 3 fields (\"allow\", \"alice\", \"*\")",
            ),
            ("deny\talice stop\t*", 1, "found 3 fields"),
            ("allow\talice\t*\t*\t*\t*", 1, "found 6 fields"),
            ("allow alice * * * *", 1, "found 6 fields"),
            ("allow alice bob * * * *", 1, "tabs"),
            ("allow\talice", 1, "found 2 fields"),
            // Empty fields: blanks between two tabs.
            ("allow\talice\t \t*\t*", 1, "field 3 is empty"),
            ("allow\t  \talice\t*\t*\t*", 1, "field 2 is empty"),
            // Comments after a rule, glued or not.
            (
                "allow\talice\t*\t*\t* # ops only",
                1,
                "comments must be on their own line",
            ),
            (
                "deny\talice\tstop\t*\t*#no",
                1,
                "comments must be on their own line",
            ),
            (
                "deny\talice\tstop\t* # no stop",
                1,
                "comments must be on their own line",
            ),
            (
                "deny alice stop * * # no",
                1,
                "comments must be on their own line",
            ),
            (
                "policy default deny # strict",
                1,
                "comments must be on their own line",
            ),
            (
                "allow\talice\t*\trole=a#b\t*",
                1,
                "comments must be on their own line",
            ),
            // `*` in a list: a tab typed as a space.
            ("allow\talice *\t*\t*\t*", 1, "stands alone"),
            (
                "deny\talice\tstop *\t*\t*",
                1,
                "actions \"stop *\": `*` stands alone",
            ),
            (
                "deny\talice\tstop\t* *",
                1,
                "condition \"* *\": `*` stands alone",
            ),
            ("deny\talice\tstop\trole=web *", 1, "stands alone"),
            (
                "deny\talice\tstop\t* role=web\t*",
                1,
                "facts \"* role=web\": `*`",
            ),
            ("deny\talice\tstop\t*\tbase *", 1, "classes \"base *\": `*`"),
            // A stray carriage return.
            ("allow\talice\r\t*\t*\t*", 1, "carriage return"),
            (
                "policy default allow\rdeny\t*\t*\t*\t*",
                1,
                "carriage return",
            ),
            // Bad conditions.
            ("allow\talice\t*\t(role=web", 1, "expression"),
            ("#\nallow\t*\t*\t=web\t*", 2, "fact"),
            ("allow\t*\t*\t*\t/(/", 1, "invalid regular expression /(/"),
        ];
        for (text, line, message) in cases {
            let err = Policy::parse(text, "x.policy").unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.problem.to_string().contains(message), "{text:?}: {err}");
            assert!(err.to_string().starts_with(&format!("x.policy:{line}: ")));
        }
    }

    #[test]
    fn line_errors_keep_the_filter_error() {
        let err = Policy::parse("allow\t*\t*\t=web\t*", "x.policy").unwrap_err();
        assert!(
            matches!(&err.problem, LineError::Fact { fact, .. } if fact == "=web"),
            "{err:?}"
        );
        let cause = std::error::Error::source(&err).and_then(std::error::Error::source);
        assert!(cause.is_some(), "the filter's own error is kept: {err:?}");
    }

    /// One bad line anywhere: the file does not parse (the caller then
    /// denies everything for the agent), however good the other lines.
    #[test]
    fn one_bad_line_spoils_the_file() {
        let good = "policy default deny\nallow\talice\t*\t*\t*\n";
        assert!(Policy::parse(good, "t.policy").is_ok());
        for (bad, line) in [
            ("deny alice\tstop\t*\t*\n", 3),
            ("allow\tbob\t*\t*\t* # bob too\n", 3),
        ] {
            let err = Policy::parse(&format!("{good}{bad}"), "t.policy").unwrap_err();
            assert_eq!(err.line, line, "{err}");
            let err = Policy::parse(&format!("{bad}{good}"), "t.policy").unwrap_err();
            assert_eq!(err.line, 1, "{err}");
        }
    }

    #[test]
    fn upstream_forms() {
        let cases = [
            // `/regex/` callers, unanchored as in Choria; one with an `=`
            // is also matched against Choria's `choria=<name>`.
            ("allow\t/^ops\\./\t*\t*\t*", "ops.alice", "x", true),
            ("allow\t/^ops\\./\t*\t*\t*", "alice.ops", "x", false),
            ("allow\tbob /ali/\t*\t*\t*", "alice", "x", true),
            ("allow\t/^choria=al/\t*\t*\t*", "alice", "x", true),
            ("allow\t/^al=/\t*\t*\t*", "alice", "x", false),
            // A compound expression in either of the 5-field form's fields.
            ("allow\t*\t*\trole=web and cores>4\tbase", "a", "b", true),
            ("allow\t*\t*\trole=web and cores>8\tbase", "a", "b", false),
            (
                "allow\t*\t*\t*\tbase and nosuch or role::web",
                "a",
                "b",
                true,
            ),
            ("allow\t*\t*\t*\tnosuch and base or other", "a", "b", false),
            ("allow\t*\t*\trole=web\tnot nosuch", "a", "b", true),
            ("allow\t*\t*\trole=web\t/^role::/ and base", "a", "b", true),
            // An unknown data plugin: that rule never matches, the others apply.
            (
                "deny\t*\t*\tnosuch('x').y=1\nallow\t*\t*\t*\t*",
                "a",
                "b",
                true,
            ),
            ("allow\t*\t*\tnosuch().y=1\t*", "a", "b", false),
            ("allow\t*\t*\t*\tbase and nosuch().y=1", "a", "b", false),
        ];
        for (text, caller, action, expected) in cases {
            assert_eq!(
                allowed(text, caller, action),
                expected,
                "{text:?} {caller} {action}"
            );
        }
        let policy =
            Policy::parse("allow\t*\t*\t*\n\ndeny\t*\t*\tx and nosuch().y=1", "t").unwrap();
        assert_eq!(policy.unknown_plugins(), vec![(3, "nosuch".to_string())]);
    }

    #[test]
    fn upstream_form_mistakes() {
        let cases = [
            ("allow\t//\t*\t*\t*", "write `*`"),
            ("allow\t/ops\t*\t*\t*", "ends with `/`"),
            ("allow\t/\t*\t*\t*", "ends with `/`"),
            ("allow\t/(/\t*\t*\t*", "caller \"/(/\""),
            (
                "allow\t*\t*\t*\trole=web",
                "a fact comparison where a class belongs",
            ),
            ("allow\t*\t*\t*\tbase and (", "expression"),
            (
                "allow\t*\t*\t*\tfstat('/x').nosuch=1",
                "a property of fstat",
            ),
        ];
        for (text, message) in cases {
            let err = Policy::parse(text, "x.policy").unwrap_err();
            assert!(err.problem.to_string().contains(message), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_failing_data_plugin_denies() {
        let policy = Policy::parse("allow\t*\t*\tfstat('/x').present=1", "t.policy").unwrap();
        assert!(policy.uses_data());
        let decision = policy.decide("a", "b", &View);
        assert!(!decision.allowed);
        assert!(decision.reason.starts_with("t.policy:1: "), "{decision:?}");
    }
}
