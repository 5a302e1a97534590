//! The `-S` compound filter language.
//!
//! ```text
//! expr      := or
//! or        := and (("or" | "||") and)*
//! and       := unary (("and" | "&&") unary)*
//! unary     := ("not" | "!") unary | "(" expr ")" | statement
//! statement := plugin "(" argument ")" "." property op value     data plugin query
//!            | fact op value                                      fact comparison
//!            | "/" regex "/" | class                              class
//! ```
//!
//! Values and arguments may be quoted with `'` or `"`; a `/regex/` value
//! may contain anything but an unescaped `/`. Errors point at the byte
//! where the text stopped making sense.

use std::fmt;

use super::fact::{is_fact_char, Comparison, Op};
use super::pattern::Pattern;
use super::{DataError, FactFilter, FilterError, NodeView, ParseError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The data plugins a compound filter may call, and their properties.
pub const DATA_PLUGINS: &[(&str, &[&str])] = &[
    (
        "fstat",
        &[
            "name",
            "output",
            "present",
            "type",
            "size",
            "mode",
            "uid",
            "gid",
            "md5",
            "atime",
            "atime_seconds",
            "atime_age",
            "mtime",
            "mtime_seconds",
            "mtime_age",
            "ctime",
            "ctime_seconds",
            "ctime_age",
        ],
    ),
    ("fact", &["value"]),
    (
        "agent",
        &[
            "agent",
            "name",
            "author",
            "description",
            "license",
            "timeout",
            "url",
            "version",
            "actions",
        ],
    ),
    ("collective", &["member"]),
    ("process", &["exists", "count", "pids"]),
    ("sysctl", &["value"]),
    (
        "puppet",
        &[
            "applying",
            "daemon_present",
            "disable_message",
            "enabled",
            "idling",
            "lastrun",
            "since_lastrun",
            "status",
        ],
    ),
];

/// A parsed `-S` expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Both must hold.
    And(Box<Expr>, Box<Expr>),
    /// Either must hold.
    Or(Box<Expr>, Box<Expr>),
    /// Must not hold.
    Not(Box<Expr>),
    /// The node has a class matching the pattern.
    Class(Pattern),
    /// A fact comparison holds.
    Fact(FactFilter),
    /// A data plugin's answer compares true.
    Data(DataQuery),
}

/// `plugin('argument').property <op> value`
#[derive(Debug, Clone, PartialEq)]
pub struct DataQuery {
    /// The data plugin (`fstat`, `process`, ...).
    pub plugin: String,
    /// What the plugin is asked about (a path, a process name, ...).
    pub argument: String,
    /// Which property of its answer is compared.
    pub property: String,
    /// How the property is compared.
    pub comparison: Comparison,
}

impl Expr {
    /// Evaluates against a node. A data plugin that fails on the node is
    /// an error, which the caller treats as "does not match".
    pub fn eval(&self, node: &dyn NodeView) -> Result<bool, DataError> {
        Ok(match self {
            Expr::And(a, b) => a.eval(node)? && b.eval(node)?,
            Expr::Or(a, b) => a.eval(node)? || b.eval(node)?,
            Expr::Not(a) => !a.eval(node)?,
            Expr::Class(p) => node.has_class(&|c| p.matches(c)),
            Expr::Fact(f) => f.matches(node.fact(&f.fact).as_ref()),
            Expr::Data(q) => {
                let result = node.data(&q.plugin, &q.argument)?;
                q.comparison.holds(result.get(&q.property))
            }
        })
    }

    /// Whether any part needs a data plugin (which only nodes can answer).
    pub fn uses_data(&self) -> bool {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => a.uses_data() || b.uses_data(),
            Expr::Not(a) => a.uses_data(),
            Expr::Data(_) => true,
            Expr::Class(_) | Expr::Fact(_) => false,
        }
    }
}

/// A `-S` expression with the text it came from, which is what travels.
#[derive(Debug, Clone, PartialEq)]
pub struct Compound {
    text: String,
    /// The parsed expression.
    pub expr: Expr,
}

impl Compound {
    /// Parses `-S` text.
    ///
    /// ```
    /// use muster_protocol::Compound;
    /// assert!(Compound::parse("httpd and (os.family=Debian or not fstat('/etc/x').present=1)").is_ok());
    /// let err = Compound::parse("httpd and (redis").unwrap_err();
    /// assert!(err.to_string().contains("expected ')'"));
    /// ```
    pub fn parse(text: &str) -> Result<Compound, FilterError> {
        let mut parser = Parser { text, pos: 0 };
        let expr = parser.expr()?;
        parser.skip_space();
        if parser.pos < text.len() {
            return Err(parser.error("'and', 'or' or the end of the expression"));
        }
        Ok(Compound {
            text: text.to_string(),
            expr,
        })
    }

    /// The text as typed, which is what travels in requests.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Compound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Compound {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Compound {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Compound::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Expressions nest at most this deep, so hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, expected: &str) -> FilterError {
        FilterError::Parse(ParseError::new(self.text, self.pos, expected))
    }

    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.text.len() - trimmed.len();
    }

    /// Consumes `word` if it is next and stands alone.
    fn keyword(&mut self, word: &str) -> bool {
        self.skip_space();
        let rest = self.rest();
        let symbolic = !word.starts_with(char::is_alphabetic);
        if let Some(after) = rest.strip_prefix(word) {
            let after = after.chars().next();
            let standalone =
                symbolic || after.is_none_or(|c| c.is_whitespace() || c == '(' || c == ')');
            if standalone {
                self.pos += word.len();
                return true;
            }
        }
        false
    }

    fn expr(&mut self) -> Result<Expr, FilterError> {
        self.or(0)
    }

    fn or(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut left = self.and(depth)?;
        while self.keyword("or") || self.keyword("||") {
            let right = self.and(depth)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut left = self.unary(depth)?;
        while self.keyword("and") || self.keyword("&&") {
            let right = self.unary(depth)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, FilterError> {
        if depth > MAX_DEPTH {
            return Err(self.error("a shallower expression (at most 64 levels of nesting)"));
        }
        self.skip_space();
        if self.keyword("not") {
            return Ok(Expr::Not(Box::new(self.unary(depth + 1)?)));
        }
        if self.rest().starts_with('!') && !self.rest().starts_with("!=") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary(depth + 1)?)));
        }
        if self.rest().starts_with('(') {
            self.pos += 1;
            let inner = self.or(depth + 1)?;
            self.skip_space();
            if !self.rest().starts_with(')') {
                return Err(self.error("')'"));
            }
            self.pos += 1;
            return Ok(inner);
        }
        self.statement()
    }

    fn statement(&mut self) -> Result<Expr, FilterError> {
        let start = self.pos;
        match self.peek() {
            None => return Err(self.error("a class, fact comparison or data plugin query")),
            Some('/') => {
                let regex = self.slashed()?;
                return Pattern::parse(regex).map(Expr::Class);
            }
            Some(')') => return Err(self.error("a class, fact comparison or data plugin query")),
            _ => {}
        }
        // A name: a class, a fact, or a plugin.
        let name_len = self
            .rest()
            .find(|c: char| !is_fact_char(c))
            .unwrap_or(self.rest().len());
        if name_len == 0 {
            return Err(self.error("a class, fact comparison or data plugin query"));
        }
        let name = &self.text[start..start + name_len];
        if matches!(name, "and" | "or" | "not") {
            return Err(self.error("a class, fact comparison or data plugin query"));
        }
        self.pos += name_len;
        if self.rest().starts_with('(') {
            return self.data_query(start, name).map(Expr::Data);
        }
        if let Some((op, len)) = Op::at(self.rest()) {
            self.pos += len;
            let value = self.value()?;
            let comparison = Comparison::new(op, &value)?;
            return Ok(Expr::Fact(FactFilter {
                fact: name.to_string(),
                comparison,
            }));
        }
        match self.peek() {
            None | Some(')') => {}
            Some(c) if c.is_whitespace() => {}
            Some(_) => return Err(self.error("a comparison operator, 'and', 'or' or ')'")),
        }
        if name.contains('.') && !name.contains("::") {
            self.pos = start + name_len;
            return Err(self.error("a comparison operator after the fact name"));
        }
        Pattern::parse(name).map(Expr::Class)
    }

    fn data_query(&mut self, start: usize, plugin: &str) -> Result<DataQuery, FilterError> {
        let Some((_, properties)) = DATA_PLUGINS.iter().find(|(p, _)| *p == plugin) else {
            self.pos = start;
            let known: Vec<&str> = DATA_PLUGINS.iter().map(|(p, _)| *p).collect();
            return Err(self.error(&format!("a known data plugin ({})", known.join(", "))));
        };
        self.pos += 1; // '('
        self.skip_space();
        let argument = match self.peek() {
            Some(q @ ('\'' | '"')) => self.quoted(q)?,
            _ => {
                let len = self.rest().find(')').unwrap_or(self.rest().len());
                let bare = self.rest()[..len].trim().to_string();
                self.pos += len;
                bare
            }
        };
        self.skip_space();
        if !self.rest().starts_with(')') {
            return Err(self.error("')' after the plugin argument"));
        }
        self.pos += 1;
        if !self.rest().starts_with('.') {
            return Err(self.error(&format!(
                "'.' and a property of {plugin} ({})",
                properties.join(", ")
            )));
        }
        self.pos += 1;
        let len = self
            .rest()
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(self.rest().len());
        let property = &self.rest()[..len];
        if !properties.contains(&property) {
            return Err(self.error(&format!(
                "a property of {plugin} ({})",
                properties.join(", ")
            )));
        }
        let property = property.to_string();
        self.pos += len;
        let Some((op, len)) = Op::at(self.rest()) else {
            return Err(self.error("a comparison operator (=, ==, =~, !=, <, >, <=, >=)"));
        };
        self.pos += len;
        let value = self.value()?;
        Ok(DataQuery {
            plugin: plugin.to_string(),
            argument,
            property,
            comparison: Comparison::new(op, &value)?,
        })
    }

    /// A comparison's right-hand side: quoted, `/regex/`, or bare up to
    /// whitespace or an unbalanced `)`.
    fn value(&mut self) -> Result<String, FilterError> {
        match self.peek() {
            Some(q @ ('\'' | '"')) => self.quoted(q),
            Some('/') => self.slashed().map(str::to_string),
            _ => {
                let mut depth = 0usize;
                let mut end = self.rest().len();
                for (i, c) in self.rest().char_indices() {
                    match c {
                        '(' => depth += 1,
                        ')' if depth == 0 => {
                            end = i;
                            break;
                        }
                        ')' => depth -= 1,
                        c if c.is_whitespace() => {
                            end = i;
                            break;
                        }
                        _ => {}
                    }
                }
                if end == 0 {
                    return Err(self.error("a value after the operator"));
                }
                let value = self.rest()[..end].to_string();
                self.pos += end;
                Ok(value)
            }
        }
    }

    fn quoted(&mut self, quote: char) -> Result<String, FilterError> {
        let body = &self.rest()[1..];
        match body.find(quote) {
            Some(end) => {
                let value = body[..end].to_string();
                self.pos += end + 2;
                Ok(value)
            }
            None => Err(self.error(&format!("a closing {quote}"))),
        }
    }

    /// `/.../`, with `\/` allowed inside; returns it with its slashes.
    fn slashed(&mut self) -> Result<&str, FilterError> {
        let rest = self.rest();
        let mut escaped = false;
        for (i, c) in rest.char_indices().skip(1) {
            match c {
                '\\' if !escaped => escaped = true,
                '/' if !escaped => {
                    let start = self.pos;
                    self.pos += i + 1;
                    return Ok(&self.text[start..self.pos]);
                }
                _ => escaped = false,
            }
        }
        Err(self.error("a regular expression closed by '/'"))
    }
}

/// `-W`: space-separated fact comparisons and class names, all of which
/// must hold.
pub fn parse_with(text: &str) -> Result<(Vec<FactFilter>, Vec<Pattern>), FilterError> {
    let mut facts = Vec::new();
    let mut classes = Vec::new();
    for word in text.split_whitespace() {
        if word.contains(['=', '<', '>']) {
            facts.push(FactFilter::parse(word)?);
        } else {
            classes.push(Pattern::parse(word)?);
        }
    }
    if facts.is_empty() && classes.is_empty() {
        return Err(FilterError::Empty("-W"));
    }
    Ok((facts, classes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    struct Node;

    impl NodeView for Node {
        fn identity(&self) -> &str {
            "web1"
        }
        fn has_class(&self, matches: &dyn Fn(&str) -> bool) -> bool {
            ["httpd", "role::web"].iter().any(|c| matches(c))
        }
        fn has_agent(&self, matches: &dyn Fn(&str) -> bool) -> bool {
            matches("rpcutil")
        }
        fn fact(&self, path: &str) -> Option<Value> {
            match path {
                "os.family" => Some(json!("Debian")),
                "memorysize_mb" => Some(json!(8192)),
                "role" => Some(json!("web")),
                _ => None,
            }
        }
        fn data(&self, plugin: &str, argument: &str) -> Result<Map<String, Value>, DataError> {
            match (plugin, argument) {
                ("fstat", "/etc/hosts") => Ok(json!({"type": "file", "size": 120, "present": 1})
                    .as_object()
                    .cloned()
                    .unwrap_or_default()),
                ("process", "redis-server") => Ok(json!({"exists": true})
                    .as_object()
                    .cloned()
                    .unwrap_or_default()),
                ("fstat", "/root/secret") => Err(DataError::new(plugin, "permission denied")),
                _ => Ok(Map::new()),
            }
        }
    }

    fn eval(text: &str) -> Result<bool, DataError> {
        Compound::parse(text)
            .unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"))
            .expr
            .eval(&Node)
    }

    #[test]
    fn evaluates_like_mcollective() {
        let cases = [
            ("httpd", true),
            ("redis", false),
            ("/^role::/", true),
            ("httpd and os.family=Debian", true),
            ("httpd and os.family=RedHat", false),
            ("redis or os.family=Debian", true),
            ("not redis", true),
            ("!redis", true),
            ("! httpd", false),
            ("httpd && !redis", true),
            ("redis || memorysize_mb>=4096", true),
            ("(redis or httpd) and not (role=db)", true),
            (
                "memorysize_mb>10000 or (role=~^we and os.family!=RedHat)",
                true,
            ),
            ("fstat('/etc/hosts').size>0", true),
            ("fstat(\"/etc/hosts\").type=file", true),
            ("fstat('/etc/hosts').type=directory", false),
            ("process('redis-server').exists=true", true),
            ("process(redis-server).exists=true", true),
            ("process('nginx').exists=true", false),
            ("role=\"web\"", true),
            ("role=/^w(e|x)b$/", true),
            ("role=~^(web|db)$ and httpd", true),
            ("((((httpd))))", true),
            ("role::web", true),
        ];
        for (text, expected) in cases {
            assert_eq!(eval(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn a_failing_data_plugin_is_an_error_not_a_match() {
        assert_eq!(
            eval("fstat('/root/secret').size>0"),
            Err(DataError::new("fstat", "permission denied"))
        );
        assert_eq!(
            eval("not fstat('/root/secret').size>0"),
            Err(DataError::new("fstat", "permission denied"))
        );
    }

    #[test]
    fn parse_errors_point_at_the_problem() {
        let cases = [
            ("httpd and (redis", 16, "')'"),
            ("", 0, "a class"),
            ("httpd and", 9, "a class"),
            ("httpd redis", 6, "'and', 'or'"),
            ("os.family", 9, "a comparison operator after"),
            ("os.family=", 10, "a value"),
            ("nosuch('x').y=1", 0, "a known data plugin"),
            ("fstat('/x').colour=1", 12, "a property of fstat"),
            ("fstat('/x')=1", 11, "'.' and a property"),
            ("fstat('/x).size=1", 6, "a closing '"),
            ("fstat('/x').size", 16, "a comparison operator"),
            ("/web(/", 0, ""),
            ("/web", 0, "a regular expression"),
            ("a=1)", 3, "'and', 'or'"),
            ("httpd and and", 10, "a class"),
            ("os%x=1", 2, "a comparison operator, 'and'"),
        ];
        for (text, position, expected) in cases {
            match Compound::parse(text) {
                Err(FilterError::Parse(e)) => {
                    assert_eq!(e.position, position, "{text:?}: {e}");
                    assert!(e.expected.starts_with(expected), "{text:?}: {e}");
                }
                Err(FilterError::Regex { .. }) if text == "/web(/" => {}
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn error_messages_show_a_caret() {
        let err = Compound::parse("httpd and (redis").unwrap_err().to_string();
        assert_eq!(
            err,
            "cannot parse filter: expected ')' at position 16\n    httpd and (redis\n                    ^"
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = format!("{}httpd{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(Compound::parse(&deep).is_err());
        let nots = format!("{}httpd", "!".repeat(10_000));
        assert!(Compound::parse(&nots).is_err());
    }

    #[test]
    fn with_mixes_facts_and_classes() {
        let (facts, classes) = parse_with("httpd os.family=Debian memorysize_mb>=4096").unwrap();
        assert_eq!(facts.len(), 2);
        assert_eq!(classes.len(), 1);
        assert!(parse_with("  ").is_err());
    }

    /// Random text built from the language's own pieces never panics the
    /// parser, and whatever parses also evaluates without panicking.
    #[test]
    fn arbitrary_input_never_panics() {
        const PIECES: &[&str] = &[
            "(",
            ")",
            " ",
            "and",
            "or",
            "not",
            "!",
            "&&",
            "||",
            "httpd",
            "os.family",
            "=",
            "==",
            "=~",
            "!=",
            "<",
            ">=",
            "Debian",
            "/",
            "^we",
            "'",
            "\"",
            "fstat",
            "('/etc/hosts')",
            ".size",
            ".",
            "process",
            "(",
            "x",
            "1",
            "\\",
            "é",
            "::",
            "*",
            "[",
            "]",
            "\0",
            "\n",
        ];
        let mut state: u64 = 0x9e3779b97f4a7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 12) as usize;
            let text: String = (0..len)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            if let Ok(compound) = Compound::parse(&text) {
                let _ = compound.expr.eval(&Node);
                let json = serde_json::to_string(&compound).unwrap();
                assert_eq!(
                    serde_json::from_str::<Compound>(&json).unwrap(),
                    compound,
                    "{text:?}"
                );
            }
        }
        for _ in 0..5_000 {
            let len = (next() % 40) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| (next() % 256) as u8).collect();
            let _ = Compound::parse(&String::from_utf8_lossy(&bytes));
        }
    }
}
