//! MCollective's Ruby DDL DSL, converted to Choria's JSON DDL layout.
//!
//! Operators bring agents whose only DDL is a Ruby `.ddl` file. The DSL is
//! a small, regular subset of Ruby, and this module reads that subset
//! itself (no Ruby runs): `metadata`, `action ... do ... end` with
//! `display`, `input`, `output` and `summarize do aggregate f(:x) end`;
//! hash rockets and `key: value`, quoted strings, symbols, `/regex/`
//! literals, numbers, `true`/`false`/`nil`, arrays, comments and line
//! continuations. The loop upstream agents use to declare alike actions,
//! `["start", "stop"].each do |act| ... end`, is unrolled, with `#{act}`,
//! `#{act.capitalize}` (and `upcase`, `downcase`) in strings and
//! `if act == "start"` conditions.
//!
//! Anything else is Ruby this module does not run: each such statement is
//! reported as a [`Skipped`] with its lines and the reason, and the rest
//! is converted. [`convert`] fails only when nothing usable (a named agent
//! with at least one action) came out.
//!
//! ```
//! let ddl = r#"
//! metadata :name => "echo", :description => "Echoes", :author => "ops",
//!          :license => "MIT", :version => "1.0", :url => "https://example.net",
//!          :timeout => 5
//! action "echo", :description => "Echo a message" do
//!   input :message, :prompt => "Message", :description => "What to echo",
//!         :type => :string, :validation => '^.+$', :optional => false, :maxlength => 90
//!   output :message, :description => "The message", :display_as => "Message"
//! end
//! "#;
//! let converted = muster_protocol::ruby_ddl::convert(ddl).unwrap();
//! assert!(converted.skipped.is_empty());
//! assert_eq!(converted.json["actions"][0]["input"]["message"]["validation"], "^.+$");
//! ```

use serde_json::{json, Map, Value};

/// The JSON schema Choria's agent DDLs name.
pub const SCHEMA: &str = "https://choria.io/schemas/mcorpc/ddl/v1/agent.json";

/// A Ruby DDL converted to JSON, with what could not be.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    /// The DDL in Choria's JSON layout.
    pub json: Value,
    /// The same as text, two-space indented, keys in the order Choria
    /// writes them (`action`, `input`, `output`, `display`, ...).
    pub text: String,
    /// Statements left out, in file order.
    pub skipped: Vec<Skipped>,
}

/// JSON whose objects keep their keys in the order given.
enum Ordered {
    Leaf(Value),
    Object(Vec<(String, Ordered)>),
    Array(Vec<Ordered>),
}

impl Ordered {
    fn write(&self, indent: usize, out: &mut String) {
        let pad = "  ".repeat(indent + 1);
        match self {
            Ordered::Leaf(value) => out.push_str(&value.to_string()),
            Ordered::Object(fields) if fields.is_empty() => out.push_str("{}"),
            Ordered::Array(items) if items.is_empty() => out.push_str("[]"),
            Ordered::Object(fields) => {
                out.push_str("{\n");
                for (i, (key, value)) in fields.iter().enumerate() {
                    out.push_str(&pad);
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push_str(": ");
                    value.write(indent + 1, out);
                    out.push_str(if i + 1 < fields.len() { ",\n" } else { "\n" });
                }
                out.push_str(&"  ".repeat(indent));
                out.push('}');
            }
            Ordered::Array(items) => {
                out.push_str("[\n");
                for (i, item) in items.iter().enumerate() {
                    out.push_str(&pad);
                    item.write(indent + 1, out);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                out.push_str(&"  ".repeat(indent));
                out.push(']');
            }
        }
    }
}

fn leaves(fields: Vec<(String, Value)>) -> Ordered {
    Ordered::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k, Ordered::Leaf(v)))
            .collect(),
    )
}

/// A statement the converter left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Its first line (1-based).
    pub line: usize,
    /// Its last line.
    pub end_line: usize,
    /// Its first line's text, trimmed.
    pub text: String,
    /// Why it was left out.
    pub why: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.end_line > self.line {
            write!(
                f,
                "{}-{}: {} ({})",
                self.line, self.end_line, self.text, self.why
            )
        } else {
            write!(f, "{}: {} ({})", self.line, self.text, self.why)
        }
    }
}

/// Why nothing usable came out of a Ruby DDL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RubyDdlError {
    /// No `metadata` with a `:name`, or no action could be converted.
    #[error("nothing usable converted: {what}")]
    NothingUsable {
        /// What is missing.
        what: String,
        /// Every statement left out, to show the operator.
        skipped: Vec<Skipped>,
    },
}

/// Converts the Ruby DDL `text`.
pub fn convert(text: &str) -> Result<Conversion, RubyDdlError> {
    let lines: Vec<&str> = text.lines().collect();
    let tokens = tokenize(text);
    let statements = statements(&tokens);
    let mut converter = Converter {
        lines: &lines,
        metadata: None,
        actions: Vec::new(),
        skipped: Vec::new(),
    };
    let tree = blocks(&statements, &mut 0, &mut converter, None);
    converter.run(&tree, &Env::default(), Context::Top, &mut None);
    converter.finish()
}

// ---------------------------------------------------------------- tokens

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `:name` or `:"name"`.
    Symbol(String),
    /// A `key:` hash label (Ruby 1.9).
    Label(String),
    Str(Vec<Part>),
    Regex(String),
    Int(i64),
    Float(f64),
    Rocket,
    Newline,
    /// Any other punctuation: `,` `(` `)` `[` `]` `{` `}` `|` `==` `.` ...
    Punct(String),
    /// Text the tokenizer does not understand (e.g. an unterminated string).
    Junk(String),
}

/// A piece of a string literal.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    /// `#{...}` in a double-quoted string: Ruby code.
    Code(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    tok: Tok,
    line: usize,
}

fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens: Vec<Token> = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < chars.len() {
        let c = chars[i];
        let start_line = line;
        let push = |tokens: &mut Vec<Token>, tok: Tok| {
            tokens.push(Token {
                tok,
                line: start_line,
            })
        };
        match c {
            '\n' => {
                push(&mut tokens, Tok::Newline);
                line += 1;
                i += 1;
            }
            // A continuation: the newline does not end the statement.
            '\\' if chars.get(i + 1) == Some(&'\n') => {
                line += 1;
                i += 2;
            }
            c if c.is_whitespace() => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '"' | '\'' => {
                let (parts, next, lines) = string(&chars, i + 1, c);
                line += lines;
                i = next;
                match parts {
                    Some(parts) => push(&mut tokens, Tok::Str(parts)),
                    None => push(&mut tokens, Tok::Junk("an unterminated string".into())),
                }
            }
            '/' if regex_may_start(tokens.last()) => {
                let mut j = i + 1;
                let mut source = String::new();
                while j < chars.len() && chars[j] != '/' && chars[j] != '\n' {
                    if chars[j] == '\\' && j + 1 < chars.len() {
                        source.push(chars[j]);
                        j += 1;
                    }
                    source.push(chars[j]);
                    j += 1;
                }
                if chars.get(j) == Some(&'/') {
                    j += 1;
                    while j < chars.len() && chars[j].is_ascii_alphabetic() {
                        j += 1;
                    }
                    push(&mut tokens, Tok::Regex(source));
                } else {
                    push(&mut tokens, Tok::Junk("an unterminated regex".into()));
                }
                i = j;
            }
            ':' if chars.get(i + 1) == Some(&':') => {
                push(&mut tokens, Tok::Punct("::".into()));
                i += 2;
            }
            ':' if chars.get(i + 1).is_some_and(|c| *c == '"' || *c == '\'') => {
                let quote = chars[i + 1];
                let (parts, next, lines) = string(&chars, i + 2, quote);
                line += lines;
                i = next;
                match parts {
                    Some(parts) if parts.iter().all(|p| matches!(p, Part::Text(_))) => {
                        push(&mut tokens, Tok::Symbol(plain(&parts)))
                    }
                    _ => push(&mut tokens, Tok::Junk("a symbol with Ruby code".into())),
                }
            }
            ':' if chars.get(i + 1).is_some_and(|c| is_word_start(*c)) => {
                let mut j = i + 1;
                while j < chars.len() && is_word(chars[j]) {
                    j += 1;
                }
                if j < chars.len() && matches!(chars[j], '?' | '!') {
                    j += 1;
                }
                push(&mut tokens, Tok::Symbol(chars[i + 1..j].iter().collect()));
                i = j;
            }
            c if c.is_ascii_digit()
                || (c == '-'
                    && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())
                    && !matches!(
                        tokens.last().map(|t| &t.tok),
                        Some(Tok::Ident(_) | Tok::Int(_) | Tok::Float(_) | Tok::Str(_))
                    )) =>
            {
                let mut j = i + 1;
                while j < chars.len()
                    && (chars[j].is_ascii_digit()
                        || chars[j] == '_'
                        || (chars[j] == '.'
                            && chars.get(j + 1).is_some_and(|d| d.is_ascii_digit())))
                {
                    j += 1;
                }
                let number: String = chars[i..j].iter().filter(|c| **c != '_').collect();
                let tok = if number.contains('.') {
                    number.parse().map(Tok::Float)
                } else {
                    number
                        .parse()
                        .map(Tok::Int)
                        .map_err(|_| ())
                        .or_else(|_| number.parse().map(Tok::Float))
                };
                push(&mut tokens, tok.unwrap_or(Tok::Junk(number)));
                i = j;
            }
            c if is_word_start(c) => {
                let mut j = i;
                while j < chars.len() && is_word(chars[j]) {
                    j += 1;
                }
                if j < chars.len() && matches!(chars[j], '?' | '!') {
                    j += 1;
                }
                let word: String = chars[i..j].iter().collect();
                // `key: value`, but not `a ? b : c` or `A::B`.
                if chars.get(j) == Some(&':') && chars.get(j + 1) != Some(&':') {
                    push(&mut tokens, Tok::Label(word));
                    j += 1;
                } else {
                    push(&mut tokens, Tok::Ident(word));
                }
                i = j;
            }
            // `%w[a b]` and `%i[a b]`: arrays of words.
            '%' if matches!(chars.get(i + 1), Some('w' | 'W' | 'i' | 'I'))
                && matches!(chars.get(i + 2), Some('[' | '(' | '{' | '<')) =>
            {
                let close = match chars[i + 2] {
                    '[' => ']',
                    '(' => ')',
                    '{' => '}',
                    _ => '>',
                };
                let Some(len) = chars[i + 3..].iter().position(|c| *c == close) else {
                    push(&mut tokens, Tok::Junk("an unterminated %w list".into()));
                    break;
                };
                let words: String = chars[i + 3..i + 3 + len].iter().collect();
                line += words.matches('\n').count();
                push(&mut tokens, Tok::Punct("[".into()));
                for (n, word) in words.split_whitespace().enumerate() {
                    if n > 0 {
                        push(&mut tokens, Tok::Punct(",".into()));
                    }
                    push(&mut tokens, Tok::Str(vec![Part::Text(word.into())]));
                }
                push(&mut tokens, Tok::Punct("]".into()));
                i += len + 4;
            }
            '=' if chars.get(i + 1) == Some(&'>') => {
                push(&mut tokens, Tok::Rocket);
                i += 2;
            }
            _ => {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                let op = if ["==", "!=", "&&", "||", "<<", "=~", "<=", ">="].contains(&two.as_str())
                {
                    two
                } else {
                    c.to_string()
                };
                i += op.chars().count();
                push(&mut tokens, Tok::Punct(op));
            }
        }
    }
    tokens
}

fn is_word_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '@' || c == '$'
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '@' || c == '$'
}

/// Whether a `/` after `previous` starts a regex rather than dividing.
fn regex_may_start(previous: Option<&Token>) -> bool {
    match previous.map(|t| &t.tok) {
        None | Some(Tok::Rocket | Tok::Newline | Tok::Label(_)) => true,
        Some(Tok::Punct(p)) => !matches!(p.as_str(), ")" | "]" | "}"),
        Some(Tok::Ident(word)) => matches!(word.as_str(), "validation" | "when" | "if" | "unless"),
        _ => false,
    }
}

/// A string body from `start` to its closing `quote`: its parts, the index
/// after it and the newlines inside. `None` when it never closes.
fn string(chars: &[char], start: usize, quote: char) -> (Option<Vec<Part>>, usize, usize) {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut lines = 0;
    let mut i = start;
    while i < chars.len() {
        let c = chars[i];
        if c == quote {
            if !text.is_empty() || parts.is_empty() {
                parts.push(Part::Text(text));
            }
            return (Some(parts), i + 1, lines);
        }
        if c == '\n' {
            lines += 1;
        }
        if c == '\\' && i + 1 < chars.len() {
            let next = chars[i + 1];
            if quote == '\'' {
                // Only \' and \\ are escapes in single quotes.
                if next == '\'' || next == '\\' {
                    text.push(next);
                } else {
                    text.push('\\');
                    text.push(next);
                }
            } else {
                text.push(match next {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    'e' => '\u{1b}',
                    's' => ' ',
                    '0' => '\0',
                    other => other,
                });
            }
            if next == '\n' {
                lines += 1;
            }
            i += 2;
            continue;
        }
        if quote == '"' && c == '#' && chars.get(i + 1) == Some(&'{') {
            let mut depth = 1;
            let mut j = i + 2;
            while j < chars.len() && depth > 0 {
                match chars[j] {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    '\n' => lines += 1,
                    _ => {}
                }
                j += 1;
            }
            if depth > 0 {
                break;
            }
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Code(chars[i + 2..j - 1].iter().collect()));
            i = j;
            continue;
        }
        text.push(c);
        i += 1;
    }
    (None, chars.len(), lines)
}

fn plain(parts: &[Part]) -> String {
    parts
        .iter()
        .map(|p| match p {
            Part::Text(t) => t.as_str(),
            Part::Code(_) => "",
        })
        .collect()
}

// ------------------------------------------------------------ statements

/// One statement's tokens, without the newline that ends it.
#[derive(Debug, Clone)]
struct Statement {
    tokens: Vec<Token>,
    line: usize,
    end_line: usize,
}

/// Splits tokens at newlines, except where Ruby continues a statement: an
/// open bracket, or a line ending in `,`, `=>`, a label or an operator.
fn statements(tokens: &[Token]) -> Vec<Statement> {
    let mut out = Vec::new();
    let mut current: Vec<Token> = Vec::new();
    let mut depth: i32 = 0;
    for token in tokens {
        match &token.tok {
            Tok::Newline => {
                let continues = depth > 0
                    || current.last().is_some_and(|t| match &t.tok {
                        Tok::Rocket | Tok::Label(_) => true,
                        Tok::Punct(p) => {
                            matches!(
                                p.as_str(),
                                "," | "(" | "[" | "{" | "." | "==" | "!=" | "&&" | "||"
                            )
                        }
                        _ => false,
                    });
                if !continues && !current.is_empty() {
                    out.push(finish_statement(std::mem::take(&mut current)));
                }
            }
            Tok::Punct(p) if p == ";" => {
                if !current.is_empty() {
                    out.push(finish_statement(std::mem::take(&mut current)));
                }
            }
            tok => {
                if let Tok::Punct(p) = tok {
                    match p.as_str() {
                        "(" | "[" | "{" => depth += 1,
                        ")" | "]" | "}" => depth -= 1,
                        _ => {}
                    }
                }
                current.push(token.clone());
            }
        }
    }
    if !current.is_empty() {
        out.push(finish_statement(current));
    }
    out
}

fn finish_statement(tokens: Vec<Token>) -> Statement {
    let line = tokens.first().map_or(0, |t| t.line);
    let end_line = tokens.last().map_or(line, |t| t.line);
    Statement {
        tokens,
        line,
        end_line,
    }
}

/// A statement, or a block (`... do ... end`, `if ... end`) with its body.
#[derive(Debug, Clone)]
enum Node {
    Plain(Statement),
    Block {
        head: Statement,
        /// The `|name|` after `do`, if any.
        params: Vec<String>,
        body: Vec<Node>,
        /// After `else`, for `if`/`unless`.
        otherwise: Vec<Node>,
        end_line: usize,
    },
}

const OPENERS: [&str; 9] = [
    "if", "unless", "while", "until", "case", "begin", "def", "class", "module",
];

/// Reads statements from `*i` into a tree until the `end` that closes
/// `opener` (or the file's end). An `else` ends the body into `otherwise`.
fn blocks(
    statements: &[Statement],
    i: &mut usize,
    converter: &mut Converter<'_>,
    opener: Option<&Statement>,
) -> Vec<Node> {
    let mut nodes = Vec::new();
    while *i < statements.len() {
        let statement = statements[*i].clone();
        *i += 1;
        let first = match statement.tokens.first().map(|t| &t.tok) {
            Some(Tok::Ident(word)) => word.as_str(),
            _ => "",
        };
        if first == "end" && statement.tokens.len() == 1 {
            if opener.is_some() {
                nodes.push(Node::Plain(statement));
                return nodes;
            }
            converter.skip(&statement, "left out: an `end` without a block to close");
            continue;
        }
        if first == "else" && statement.tokens.len() == 1 && opener.is_some() {
            nodes.push(Node::Plain(statement));
            continue;
        }
        let (head, params) = match block_head(&statement) {
            Some(found) => found,
            None if OPENERS.contains(&first) => (statement.clone(), Vec::new()),
            None => {
                nodes.push(Node::Plain(statement));
                continue;
            }
        };
        let mut inner = blocks(statements, i, converter, Some(&statement));
        let end_line = match inner.last() {
            Some(Node::Plain(last)) if is_keyword(&last.tokens, "end") => {
                let line = last.line;
                inner.pop();
                line
            }
            _ => {
                converter.skip(&statement, "left out: a block without its `end`");
                continue;
            }
        };
        let (body, otherwise) = match inner
            .iter()
            .position(|n| matches!(n, Node::Plain(s) if is_keyword(&s.tokens, "else")))
        {
            Some(at) => {
                let otherwise = inner.split_off(at + 1);
                inner.pop();
                (inner, otherwise)
            }
            None => (inner, Vec::new()),
        };
        nodes.push(Node::Block {
            head,
            params,
            body,
            otherwise,
            end_line,
        });
    }
    nodes
}

fn is_keyword(tokens: &[Token], word: &str) -> bool {
    matches!(tokens, [Token { tok: Tok::Ident(w), .. }] if w == word)
}

/// A statement ending in `do` or `do |a, b|`: the statement without them,
/// and the block's parameter names.
fn block_head(statement: &Statement) -> Option<(Statement, Vec<String>)> {
    let tokens = &statement.tokens;
    let mut end = tokens.len();
    let mut params = Vec::new();
    if matches!(tokens.last().map(|t| &t.tok), Some(Tok::Punct(p)) if p == "|") {
        let open = tokens[..end - 1]
            .iter()
            .rposition(|t| matches!(&t.tok, Tok::Punct(p) if p == "|"))?;
        for token in &tokens[open + 1..end - 1] {
            match &token.tok {
                Tok::Ident(name) => params.push(name.clone()),
                Tok::Punct(p) if p == "," => {}
                _ => return None,
            }
        }
        end = open;
    }
    match tokens[..end].last().map(|t| &t.tok) {
        Some(Tok::Ident(word)) if word == "do" => {
            let mut head = statement.clone();
            head.tokens.truncate(end - 1);
            Some((head, params))
        }
        _ => None,
    }
}

// ----------------------------------------------------------- conversion

/// Loop variables in scope: name to value.
#[derive(Debug, Clone, Default)]
struct Env(Vec<(String, Value)>);

impl Env {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Context {
    Top,
    Action,
    Summarize,
}

/// An action being built.
#[derive(Debug, Default)]
struct Action {
    name: String,
    description: String,
    display: Option<String>,
    input: Vec<(String, Vec<(String, Value)>)>,
    output: Vec<(String, Vec<(String, Value)>)>,
    aggregate: Vec<Value>,
}

struct Converter<'a> {
    lines: &'a [&'a str],
    metadata: Option<Vec<(String, Value)>>,
    actions: Vec<Action>,
    skipped: Vec<Skipped>,
}

impl Converter<'_> {
    fn skip_lines(&mut self, line: usize, end_line: usize, why: impl Into<String>) {
        let text = self
            .lines
            .get(line.saturating_sub(1))
            .map_or("", |l| l.trim())
            .to_string();
        let mut why: String = why.into();
        if !why.starts_with("left out") && !why.starts_with("kept") {
            why = format!("left out: {why}");
        }
        let skipped = Skipped {
            line,
            end_line,
            text,
            why,
        };
        // A statement in an unrolled loop is met once per value.
        if !self.skipped.contains(&skipped) {
            self.skipped.push(skipped);
        }
    }

    fn skip(&mut self, statement: &Statement, why: impl Into<String>) {
        self.skip_lines(statement.line, statement.end_line, why);
    }

    /// Notes Ruby code a statement's strings keep as written.
    fn kept(&mut self, line: usize, end_line: usize, kept: &[String]) {
        if !kept.is_empty() {
            self.skip_lines(
                line,
                end_line,
                format!(
                    "kept, with Ruby code as written in its text: {}",
                    kept.join(", ")
                ),
            );
        }
    }

    fn run(&mut self, nodes: &[Node], env: &Env, context: Context, action: &mut Option<Action>) {
        for node in nodes {
            match node {
                Node::Plain(statement) => self.statement(statement, env, context, action),
                Node::Block {
                    head,
                    params,
                    body,
                    otherwise,
                    end_line,
                } => self.block(
                    head, params, body, otherwise, *end_line, env, context, action,
                ),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn block(
        &mut self,
        head: &Statement,
        params: &[String],
        body: &[Node],
        otherwise: &[Node],
        end_line: usize,
        env: &Env,
        context: Context,
        action: &mut Option<Action>,
    ) {
        let name = match head.tokens.first().map(|t| &t.tok) {
            Some(Tok::Ident(word)) => word.as_str(),
            _ => "",
        };
        match (name, context) {
            ("action", Context::Top) => {
                let args = match call_args(&head.tokens[1..], env) {
                    Ok(args) => args,
                    Err(why) => return self.skip_lines(head.line, end_line, why),
                };
                self.kept(head.line, head.end_line, &args.kept);
                let Some(Value::String(action_name)) = args.positional.first() else {
                    return self.skip_lines(head.line, end_line, "an action needs a name");
                };
                let mut built = Some(Action {
                    name: action_name.clone(),
                    description: text_of(args.named.get("description")),
                    ..Action::default()
                });
                self.run(body, env, Context::Action, &mut built);
                if let Some(built) = built {
                    if self.actions.iter().any(|a| a.name == built.name) {
                        self.skip_lines(
                            head.line,
                            end_line,
                            format!(
                                "action {:?} is declared twice; the first is kept",
                                built.name
                            ),
                        );
                    } else {
                        self.actions.push(built);
                    }
                }
            }
            ("summarize", Context::Action) if head.tokens.len() == 1 => {
                self.run(body, env, Context::Summarize, action);
            }
            ("if" | "unless", _) => match condition(&head.tokens[1..], env) {
                Ok(holds) => {
                    let chosen = if holds == (name == "if") {
                        body
                    } else {
                        otherwise
                    };
                    self.run(chosen, env, context, action);
                }
                Err(why) => self.skip_lines(head.line, end_line, why),
            },
            _ => {
                // `[...].each do |x|`: the body once for each value.
                if let (Some(values), [param]) = (each_values(&head.tokens, env), params) {
                    for value in values {
                        let mut inner = env.clone();
                        inner.0.push((param.clone(), value));
                        self.run(body, &inner, context, action);
                    }
                    return;
                }
                self.skip_lines(
                    head.line,
                    end_line,
                    "left out: Ruby code, not the DDL DSL (the whole block)",
                );
            }
        }
    }

    fn statement(
        &mut self,
        statement: &Statement,
        env: &Env,
        context: Context,
        action: &mut Option<Action>,
    ) {
        let tokens = &statement.tokens;
        let name = match tokens.first().map(|t| &t.tok) {
            Some(Tok::Ident(word)) => word.as_str(),
            _ => "",
        };
        let args = || call_args(&tokens[1..], env);
        match (name, context, action.as_mut()) {
            ("metadata", Context::Top, _) => match args() {
                Ok(args) if args.positional.is_empty() => {
                    self.kept(statement.line, statement.end_line, &args.kept);
                    const KEYS: [&str; 8] = [
                        "name",
                        "description",
                        "author",
                        "license",
                        "version",
                        "url",
                        "provider",
                        "timeout",
                    ];
                    let metadata: Vec<(String, Value)> = KEYS
                        .iter()
                        .filter_map(|key| Some((key.to_string(), args.named.get(*key)?.clone())))
                        .collect();
                    let unknown = dropped(&args.named, &KEYS);
                    if !unknown.is_empty() {
                        self.skip(
                            statement,
                            format!(
                                "metadata keys without a JSON equivalent left out: {unknown:?}"
                            ),
                        );
                    }
                    self.metadata = Some(metadata);
                }
                Ok(_) => self.skip(statement, "metadata takes key => value pairs only"),
                Err(why) => self.skip(statement, why),
            },
            ("requires", Context::Top, _) => {
                self.skip(statement, "left out: the JSON DDL has no requires")
            }
            ("display", Context::Action, Some(built)) => match args() {
                Ok(args) => match args.positional.as_slice() {
                    [Value::String(when)]
                        if ["always", "ok", "failed"].contains(&when.as_str()) =>
                    {
                        built.display = Some(when.clone());
                    }
                    _ => self.skip(statement, "display takes :always, :ok or :failed"),
                },
                Err(why) => self.skip(statement, why),
            },
            ("input" | "output", Context::Action, Some(built)) => {
                match args() {
                    Ok(args) => match args.positional.as_slice() {
                        [Value::String(item)] => {
                            self.kept(statement.line, statement.end_line, &args.kept);
                            let (value, dropped) = if name == "input" {
                                input(&args.named)
                            } else {
                                output(&args.named)
                            };
                            if !dropped.is_empty() {
                                self.skip(statement, format!("kept, but not its keys without a JSON equivalent: {dropped:?}"));
                            }
                            let list = if name == "input" {
                                &mut built.input
                            } else {
                                &mut built.output
                            };
                            list.retain(|(n, _)| n != item);
                            list.push((item.clone(), value));
                        }
                        _ => self.skip(
                            statement,
                            format!("{name} takes a name, then key => value pairs"),
                        ),
                    },
                    Err(why) => self.skip(statement, why),
                }
            }
            ("aggregate", Context::Summarize, Some(built)) => match aggregate(&tokens[1..], env) {
                Ok(value) => built.aggregate.push(value),
                Err(why) => self.skip(statement, why),
            },
            _ => {
                let why = match context {
                    Context::Top => "left out: not a DDL statement (metadata, action)",
                    Context::Action => "left out: not a DDL statement of an action (display, input, output, summarize)",
                    Context::Summarize => "left out: only aggregate FUNCTION(:output) is converted in summarize",
                };
                self.skip(statement, why)
            }
        }
    }

    fn finish(self) -> Result<Conversion, RubyDdlError> {
        let Converter {
            metadata,
            actions,
            mut skipped,
            ..
        } = self;
        skipped.sort_by_key(|s| s.line);
        let named = metadata
            .iter()
            .flatten()
            .any(|(key, value)| key == "name" && value.as_str().is_some_and(|n| !n.is_empty()));
        if !named || actions.is_empty() {
            let what = if !named {
                "no metadata with a :name"
            } else {
                "no action"
            };
            return Err(RubyDdlError::NothingUsable {
                what: what.into(),
                skipped,
            });
        }
        let mut sorted = actions;
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let actions: Vec<Ordered> = sorted
            .into_iter()
            .map(|a| {
                let mut fields = vec![
                    ("action".to_string(), Ordered::Leaf(json!(a.name))),
                    (
                        "input".to_string(),
                        Ordered::Object(a.input.into_iter().map(|(k, v)| (k, leaves(v))).collect()),
                    ),
                    (
                        "output".to_string(),
                        Ordered::Object(
                            a.output.into_iter().map(|(k, v)| (k, leaves(v))).collect(),
                        ),
                    ),
                    (
                        "display".to_string(),
                        Ordered::Leaf(json!(a.display.unwrap_or_else(|| "failed".into()))),
                    ),
                    (
                        "description".to_string(),
                        Ordered::Leaf(json!(a.description)),
                    ),
                ];
                if !a.aggregate.is_empty() {
                    fields.push((
                        "aggregate".to_string(),
                        Ordered::Array(
                            a.aggregate
                                .into_iter()
                                .map(|entry| {
                                    leaves(
                                        ["function", "args"]
                                            .iter()
                                            .map(|key| (key.to_string(), entry[*key].clone()))
                                            .collect(),
                                    )
                                })
                                .collect(),
                        ),
                    ));
                }
                Ordered::Object(fields)
            })
            .collect();
        let document = Ordered::Object(vec![
            ("$schema".to_string(), Ordered::Leaf(json!(SCHEMA))),
            ("metadata".to_string(), leaves(metadata.unwrap_or_default())),
            ("actions".to_string(), Ordered::Array(actions)),
        ]);
        let mut text = String::new();
        document.write(0, &mut text);
        text.push('\n');
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Conversion {
            json,
            text,
            skipped,
        })
    }
}

fn text_of(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// An input's fields, in Choria's key order, and the keys left out.
fn input(named: &Map<String, Value>) -> (Vec<(String, Value)>, Vec<String>) {
    const KEYS: [&str; 8] = [
        "prompt",
        "description",
        "type",
        "default",
        "optional",
        "validation",
        "maxlength",
        "list",
    ];
    (pick(named, &KEYS), dropped(named, &KEYS))
}

/// An output's fields, in Choria's key order, and the keys left out.
fn output(named: &Map<String, Value>) -> (Vec<(String, Value)>, Vec<String>) {
    const KEYS: [&str; 4] = ["description", "display_as", "default", "type"];
    (pick(named, &KEYS), dropped(named, &KEYS))
}

fn pick(named: &Map<String, Value>, keys: &[&str]) -> Vec<(String, Value)> {
    keys.iter()
        .filter_map(|key| Some((key.to_string(), named.get(*key)?.clone())))
        .collect()
}

fn dropped(named: &Map<String, Value>, known: &[&str]) -> Vec<String> {
    named
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .cloned()
        .collect()
}

/// `summary(:x)`, `average(:x, :format => "%.2f")`: Choria's
/// `{"function": ..., "args": [...]}`, options as a trailing object.
fn aggregate(tokens: &[Token], env: &Env) -> Result<Value, String> {
    let Some(Tok::Ident(function)) = tokens.first().map(|t| &t.tok) else {
        return Err("aggregate takes FUNCTION(:output)".into());
    };
    let args = call_args(&tokens[1..], env)?;
    let mut list: Vec<Value> = args.positional;
    if !args.named.is_empty() {
        list.push(Value::Object(args.named));
    }
    if list.is_empty() {
        return Err(format!("aggregate {function} names no output"));
    }
    Ok(json!({ "function": function, "args": list }))
}

/// `[a, b].each`: the array's values.
fn each_values(tokens: &[Token], env: &Env) -> Option<Vec<Value>> {
    let n = tokens.len();
    if n < 4 {
        return None;
    }
    let (Tok::Punct(dot), Tok::Ident(each)) = (&tokens[n - 2].tok, &tokens[n - 1].tok) else {
        return None;
    };
    if dot != "." || each != "each" {
        return None;
    }
    let mut parser = Parser {
        tokens: &tokens[..n - 2],
        at: 0,
        env,
        kept: Vec::new(),
    };
    match parser.value() {
        Ok(Value::Array(values)) if parser.at == n - 2 => Some(values),
        _ => None,
    }
}

/// `act == "install"`, `act != :x`: compared by value.
fn condition(tokens: &[Token], env: &Env) -> Result<bool, String> {
    let mut parser = Parser {
        tokens,
        at: 0,
        env,
        kept: Vec::new(),
    };
    let left = parser.value()?;
    let op = match parser.next().map(|t| &t.tok) {
        Some(Tok::Punct(op)) if op == "==" || op == "!=" => op.clone(),
        _ => {
            return Err(
                "a condition other than `value == value` is Ruby code; the block was left out"
                    .into(),
            )
        }
    };
    let right = parser.value()?;
    if parser.at != tokens.len() {
        return Err(
            "a condition other than `value == value` is Ruby code; the block was left out".into(),
        );
    }
    Ok((left == right) == (op == "=="))
}

/// A call's arguments: values, and `key => value` / `key: value` pairs.
struct Args {
    positional: Vec<Value>,
    named: Map<String, Value>,
    /// Ruby code left in strings as written.
    kept: Vec<String>,
}

fn call_args(tokens: &[Token], env: &Env) -> Result<Args, String> {
    // `f(a, b)` as well as `f a, b`.
    let inner = match (
        tokens.first().map(|t| &t.tok),
        tokens.last().map(|t| &t.tok),
    ) {
        (Some(Tok::Punct(open)), Some(Tok::Punct(close)))
            if open == "(" && close == ")" && closes_at(tokens) == Some(tokens.len() - 1) =>
        {
            &tokens[1..tokens.len() - 1]
        }
        _ => tokens,
    };
    let mut parser = Parser {
        tokens: inner,
        at: 0,
        env,
        kept: Vec::new(),
    };
    let mut args = Args {
        positional: Vec::new(),
        named: Map::new(),
        kept: Vec::new(),
    };
    while parser.at < inner.len() {
        match parser.peek().map(|t| &t.tok) {
            Some(Tok::Label(key)) => {
                let key = key.clone();
                parser.at += 1;
                let value = parser.value()?;
                args.named.insert(key, value);
            }
            _ => {
                let value = parser.value()?;
                if matches!(parser.peek().map(|t| &t.tok), Some(Tok::Rocket)) {
                    parser.at += 1;
                    let key = match value {
                        Value::String(key) => key,
                        other => {
                            return Err(format!(
                                "a hash key must be a symbol or string, not {other}"
                            ))
                        }
                    };
                    let value = parser.value()?;
                    args.named.insert(key, value);
                } else if args.named.is_empty() {
                    args.positional.push(value);
                } else {
                    return Err("a value after key => value pairs".into());
                }
            }
        }
        match parser.next().map(|t| &t.tok) {
            None => break,
            Some(Tok::Punct(comma)) if comma == "," => {}
            Some(other) => return Err(format!("unexpected {} in the arguments", describe(other))),
        }
    }
    args.kept = parser.kept;
    Ok(args)
}

/// Where the bracket opening `tokens` closes.
fn closes_at(tokens: &[Token]) -> Option<usize> {
    let mut depth = 0;
    for (i, token) in tokens.iter().enumerate() {
        if let Tok::Punct(p) = &token.tok {
            match p.as_str() {
                "(" | "[" | "{" => depth += 1,
                ")" | "]" | "}" => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                _ => {}
            }
        }
    }
    None
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Ident(w) => format!("`{w}`"),
        Tok::Symbol(s) => format!("`:{s}`"),
        Tok::Label(l) => format!("`{l}:`"),
        Tok::Str(_) => "a string".into(),
        Tok::Regex(r) => format!("`/{r}/`"),
        Tok::Int(n) => n.to_string(),
        Tok::Float(n) => n.to_string(),
        Tok::Rocket => "`=>`".into(),
        Tok::Newline => "the end of the line".into(),
        Tok::Punct(p) => format!("`{p}`"),
        Tok::Junk(why) => why.clone(),
    }
}

/// Reads literal values.
struct Parser<'t, 'e> {
    tokens: &'t [Token],
    at: usize,
    env: &'e Env,
    /// `#{...}` code left in strings as written.
    kept: Vec<String>,
}

impl<'t> Parser<'t, '_> {
    fn peek(&self) -> Option<&'t Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<&'t Token> {
        let token = self.tokens.get(self.at);
        self.at += 1;
        token
    }

    fn value(&mut self) -> Result<Value, String> {
        let Some(token) = self.next() else {
            return Err("a value is missing".into());
        };
        let value = match &token.tok {
            Tok::Str(parts) => Value::String(self.interpolate(parts)?),
            Tok::Symbol(name) => Value::String(name.clone()),
            Tok::Regex(source) => Value::String(source.clone()),
            Tok::Int(n) => json!(n),
            Tok::Float(n) => json!(n),
            Tok::Ident(word) => match word.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "nil" => Value::Null,
                name => match self.env.get(name) {
                    Some(value) => value.clone(),
                    None => return Err(format!("`{name}` is Ruby code, not a literal")),
                },
            },
            Tok::Punct(p) if p == "[" => {
                let mut items = Vec::new();
                loop {
                    if matches!(self.peek().map(|t| &t.tok), Some(Tok::Punct(p)) if p == "]") {
                        self.at += 1;
                        break;
                    }
                    items.push(self.value()?);
                    match self.next().map(|t| &t.tok) {
                        Some(Tok::Punct(p)) if p == "," => {}
                        Some(Tok::Punct(p)) if p == "]" => break,
                        _ => return Err("an array that is not a list of literals".into()),
                    }
                }
                Value::Array(items)
            }
            Tok::Punct(p) if p == "{" => {
                let mut map = Map::new();
                loop {
                    if matches!(self.peek().map(|t| &t.tok), Some(Tok::Punct(p)) if p == "}") {
                        self.at += 1;
                        break;
                    }
                    let key = match self.peek().map(|t| &t.tok) {
                        Some(Tok::Label(key)) => {
                            self.at += 1;
                            key.clone()
                        }
                        _ => {
                            let key = match self.value()? {
                                Value::String(key) => key,
                                other => other.to_string(),
                            };
                            match self.next().map(|t| &t.tok) {
                                Some(Tok::Rocket) => key,
                                _ => return Err("a hash that is not key => value pairs".into()),
                            }
                        }
                    };
                    map.insert(key, self.value()?);
                    match self.next().map(|t| &t.tok) {
                        Some(Tok::Punct(p)) if p == "," => {}
                        Some(Tok::Punct(p)) if p == "}" => break,
                        _ => return Err("a hash that is not key => value pairs".into()),
                    }
                }
                Value::Object(map)
            }
            other => return Err(format!("{} is not a literal value", describe(other))),
        };
        // A method call on a value (`"x".upcase`) is Ruby code.
        if matches!(self.peek().map(|t| &t.tok), Some(Tok::Punct(p)) if p == "." || p == "+") {
            return Err(
                "an expression (a method call or operator) is Ruby code, not a literal".into(),
            );
        }
        Ok(value)
    }

    /// A string's text with `#{var}` and `#{var.capitalize}` filled in.
    /// Code it cannot evaluate stays in the text as written, and is noted.
    fn interpolate(&mut self, parts: &[Part]) -> Result<String, String> {
        let mut text = String::new();
        for part in parts {
            match part {
                Part::Text(t) => text.push_str(t),
                Part::Code(code) => {
                    let code = code.trim();
                    if let Some(value) = self.substitute(code) {
                        text.push_str(&value);
                        continue;
                    }
                    let (name, method) = code.split_once('.').unwrap_or((code, ""));
                    let value = match self.env.get(name) {
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(other) => Some(other.to_string()),
                        None => None,
                    };
                    let done = value.and_then(|value| match method {
                        "" | "to_s" => Some(value),
                        "capitalize" => Some(capitalize(&value)),
                        "upcase" => Some(value.to_uppercase()),
                        "downcase" => Some(value.to_lowercase()),
                        _ => None,
                    });
                    match done {
                        Some(value) => text.push_str(&value),
                        None => {
                            let written = format!("#{{{code}}}");
                            text.push_str(&written);
                            self.kept.push(written);
                        }
                    }
                }
            }
        }
        Ok(text)
    }
}

impl Parser<'_, '_> {
    /// `var.sub(/re/, 'text')` or `gsub`: the loop value with the first
    /// (every) match replaced, as upstream's service DDL words its outputs.
    fn substitute(&self, code: &str) -> Option<String> {
        let tokens: Vec<Tok> = tokenize(code).into_iter().map(|t| t.tok).collect();
        let [Tok::Ident(name), Tok::Punct(dot), Tok::Ident(method), Tok::Punct(open), Tok::Regex(pattern), Tok::Punct(comma), Tok::Str(with), Tok::Punct(close)] =
            tokens.as_slice()
        else {
            return None;
        };
        if dot != "." || open != "(" || comma != "," || close != ")" {
            return None;
        }
        let value = self.env.get(name)?.as_str()?;
        let pattern = regex::Regex::new(pattern).ok()?;
        let with = match with.as_slice() {
            [Part::Text(with)] if !with.contains('\\') => with.as_str(),
            _ => return None,
        };
        match method.as_str() {
            "sub" => Some(pattern.replace(value, regex::NoExpand(with)).into_owned()),
            "gsub" => Some(
                pattern
                    .replace_all(value, regex::NoExpand(with))
                    .into_owned(),
            ),
            _ => None,
        }
    }
}

/// Ruby's `capitalize`: the first letter up, the rest down.
fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first
            .to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_of_every_kind_are_read() {
        let ddl = r##"
metadata :name => 'x', :description => "a \"quoted\" text", :author => "me",
         :license => "MIT", :version => "1.0", :url => "https://x", :timeout => 20

action "run", :description => 'It\'s run' do
  display :ok
  input :count, prompt: "Count", description: "How many", type: :integer,
        optional: true, default: -3
  input :ratio,
        :prompt => "Ratio", :description => "A ratio", :type => :float, \
        :optional => true, :default => 0.5
  input :format, :prompt => "Format", :description => "Which", :type => :list,
        :optional => true, :list => ["json", :yaml], :default => nil
  input :name, :prompt => "Name", :description => "A name", :type => :string,
        :validation => /^[a-z]+\/x$/i, :optional => false, :maxlength => 30 # trailing comment
  input :flag, :prompt => "Flag", :description => "On?", :type => :boolean, :optional => true, :default => false
  output :result, :description => "Result", :display_as => "Result", :default => {"a" => 1}
  summarize do
    aggregate average(:count, :format => "%.1f")
    aggregate summary(:result)
  end
end
"##;
        let converted = convert(ddl).expect("converts");
        assert_eq!(converted.skipped, vec![]);
        let json = &converted.json;
        assert_eq!(json["$schema"], SCHEMA);
        assert_eq!(json["metadata"]["name"], "x");
        assert_eq!(json["metadata"]["description"], "a \"quoted\" text");
        assert_eq!(json["metadata"]["timeout"], 20);
        let action = &json["actions"][0];
        assert_eq!(action["action"], "run");
        assert_eq!(action["description"], "It's run");
        assert_eq!(action["display"], "ok");
        let input = &action["input"];
        assert_eq!(input["count"]["type"], "integer");
        assert_eq!(input["count"]["default"], -3);
        assert_eq!(input["ratio"]["default"], 0.5);
        assert_eq!(input["format"]["list"], json!(["json", "yaml"]));
        assert_eq!(input["format"]["default"], Value::Null);
        assert_eq!(input["name"]["validation"], "^[a-z]+\\/x$");
        assert_eq!(input["name"]["maxlength"], 30);
        assert_eq!(input["flag"]["default"], false);
        assert_eq!(action["output"]["result"]["default"], json!({"a": 1}));
        assert_eq!(
            action["aggregate"],
            json!([
                {"function": "average", "args": ["count", {"format": "%.1f"}]},
                {"function": "summary", "args": ["result"]}
            ])
        );
    }

    #[test]
    fn loops_over_literal_arrays_are_unrolled() {
        let ddl = r##"
metadata :name => "svc", :description => "d", :author => "a", :license => "l",
         :version => "1", :url => "u", :timeout => 9
requires :mcollective => "2.2.1"
["start", "stop"].each do |act|
  action act, :description => "#{act.capitalize} a service" do
    input :service, :prompt => "Service", :description => "The service to #{act}",
          :type => :string, :validation => :service_name, :optional => false, :maxlength => 90
    if act == "start"
      input :wait, :prompt => "Wait", :description => "Wait", :type => :boolean, :optional => true
    end
    output :status, :description => "After #{act.sub(/p$/, 'pp')}ing #{act.reverse}", :display_as => "Status"
  end
end
"##;
        let converted = convert(ddl).expect("converts");
        let actions = converted.json["actions"].as_array().expect("actions");
        let names: Vec<&str> = actions
            .iter()
            .filter_map(|a| a["action"].as_str())
            .collect();
        assert_eq!(names, ["start", "stop"]);
        assert_eq!(actions[0]["description"], "Start a service");
        assert_eq!(
            actions[1]["input"]["service"]["description"],
            "The service to stop"
        );
        assert_eq!(actions[1]["input"]["service"]["validation"], "service_name");
        assert!(actions[0]["input"].get("wait").is_some());
        assert!(actions[1]["input"].get("wait").is_none());
        // `requires`, and the output whose text is Ruby code (once per loop).
        // `sub` is applied; `reverse` is not, and stays as written, noted
        // once for both loop values.
        assert_eq!(
            actions[0]["output"]["status"]["description"],
            "After starting #{act.reverse}"
        );
        assert_eq!(
            actions[1]["output"]["status"]["description"],
            "After stopping #{act.reverse}"
        );
        let lines: Vec<usize> = converted.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [4, 12], "{:?}", converted.skipped);
        assert!(
            converted.skipped[0].why.starts_with("left out"),
            "{:?}",
            converted.skipped
        );
        assert!(
            converted.skipped[1].why.starts_with("kept")
                && converted.skipped[1].why.contains("#{act.reverse}"),
            "{:?}",
            converted.skipped
        );
    }

    #[test]
    fn ruby_code_is_reported_with_its_lines_and_the_rest_converted() {
        let ddl = "metadata :name => \"x\", :timeout => 2\n\
                   def helper\n  1\nend\n\
                   action \"a\", :description => \"A\" do\n\
                     output :o, :description => \"O\", :display_as => \"O\"\n\
                     x = compute(1)\n\
                   end\n\
                   puts \"hello\"\n";
        let converted = convert(ddl).expect("converts");
        let shown: Vec<String> = converted.skipped.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 3, "{shown:?}");
        assert!(shown[0].starts_with("2-4: def helper ("), "{shown:?}");
        assert!(shown[1].starts_with("7: x = compute(1) ("), "{shown:?}");
        assert!(shown[2].starts_with("9: puts \"hello\" ("), "{shown:?}");
        assert_eq!(
            converted.json["actions"][0]["output"]["o"]["display_as"],
            "O"
        );
    }

    #[test]
    fn ruby_19_hashes_and_word_arrays_are_read() {
        let ddl = "metadata(name: \"x\", timeout: 3)\n\
                   action \"clean\", description: \"Clean\" do\n\
                     input :mode, prompt: \"Mode\", description: \"M\", type: :list,\n\
                           optional: true, list: %w[all metadata\n  dbcache]\n\
                     summarize { }\n\
                   end\n";
        let converted = convert(ddl).expect("converts");
        let action = &converted.json["actions"][0];
        assert_eq!(action["description"], "Clean");
        assert_eq!(action["display"], "failed");
        assert_eq!(
            action["input"]["mode"]["list"],
            json!(["all", "metadata", "dbcache"])
        );
        // A brace block is not the DSL's form: named, not guessed at.
        assert_eq!(converted.skipped.len(), 1, "{:?}", converted.skipped);
        assert_eq!(converted.skipped[0].line, 6);
    }

    #[test]
    fn nothing_usable_is_an_error_that_lists_the_skipped_lines() {
        let err = convert("puts 1\n").expect_err("nothing usable");
        let RubyDdlError::NothingUsable { what, skipped } = err;
        assert!(what.contains("metadata"), "{what}");
        assert_eq!(skipped.len(), 1);
        let err = convert("metadata :name => \"x\"\n").expect_err("no action");
        assert!(err.to_string().contains("no action"), "{err}");
    }
}
