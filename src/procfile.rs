//! Procfiles (`type: command` lines) and process commands.
//!
//! A command is split into words the way a shell would split it (quotes, backslash escapes) when the Procfile is
//! read, so mistakes surface at build time with a line number. `$VAR`, `${VAR}` and `${VAR:-default}` are kept as
//! references and expanded from the dyno's environment when the dyno starts ([`Command::expand`]). Shell operators
//! are refused: a dyno runs one WebAssembly module, there is no shell to run pipelines.

use std::collections::BTreeMap;
#[cfg(feature = "platform")]
use std::collections::HashMap;
use std::fmt;

/// The first word that asks for a CGI web dyno: `web: cgi app.wasm`.
pub const CGI: &str = "cgi";

/// The process type run before a release goes live.
#[cfg(feature = "platform")]
pub const RELEASE_TYPE: &str = "release";

/// The process type the router sends requests to (the only one that gets a listener or `$PORT`), as on Heroku.
pub const WEB_TYPE: &str = "web";

/// A parsed Procfile: process type → command, in a stable order.
#[cfg(feature = "platform")]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Procfile {
    pub types: BTreeMap<String, Command>,
}

/// What was wrong with a Procfile or a command, and where.
#[cfg(feature = "platform")]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProcfileError {
    #[error("Procfile line {line}: expected `type: command`, found no colon in {text:?}")]
    MissingColon { line: usize, text: String },
    #[error(
        "Procfile line {line}: process type {name:?} may only use letters, digits, `_` and `-`"
    )]
    BadType { line: usize, name: String },
    #[error("Procfile line {line}: process type {name:?} is already defined on line {first}")]
    Duplicate {
        line: usize,
        name: String,
        first: usize,
    },
    #[error("Procfile line {line}: process type {name:?} has an empty command")]
    EmptyCommand { line: usize, name: String },
    #[error("{}{reason}", line_prefix(*line))]
    Command { line: usize, reason: CommandError },
}

#[cfg(feature = "platform")]
fn line_prefix(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!("Procfile line {line}: ")
    }
}

/// Why a command line could not be split into words.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error(
        "shell operator `{0}` is not supported: a dyno runs one WebAssembly module (quote it to pass it as an argument)"
    )]
    ShellOperator(String),
    #[error("unterminated {0} quote")]
    UnterminatedQuote(&'static str),
    #[error("unterminated `${{` in variable reference")]
    UnterminatedBrace,
    #[error("bad variable name in `${{{0}}}`")]
    BadVariable(String),
    #[error("trailing backslash")]
    TrailingBackslash,
    #[error("command substitution (`$(...)` or backticks) is not supported")]
    Substitution,
    #[error("the command is empty")]
    Empty,
    #[error("`cgi` must be followed by the module to run, as in `web: cgi app.wasm`")]
    CgiWithoutModule,
}

/// Is `name` a valid process type (`[A-Za-z0-9_-]+`)?
pub fn is_valid_type(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(feature = "platform")]
impl Procfile {
    /// Parses a Procfile, naming the line of the first mistake.
    pub fn parse(text: &str) -> Result<Self, ProcfileError> {
        let mut types = BTreeMap::new();
        let mut first_line: HashMap<String, usize> = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let Some((name, command)) = trimmed.split_once(':') else {
                return Err(ProcfileError::MissingColon {
                    line,
                    text: trimmed.to_string(),
                });
            };
            let name = name.trim();
            if !is_valid_type(name) {
                return Err(ProcfileError::BadType {
                    line,
                    name: name.to_string(),
                });
            }
            if let Some(&first) = first_line.get(name) {
                return Err(ProcfileError::Duplicate {
                    line,
                    name: name.to_string(),
                    first,
                });
            }
            let command = command.trim();
            if command.is_empty() {
                return Err(ProcfileError::EmptyCommand {
                    line,
                    name: name.to_string(),
                });
            }
            let command = Command::parse(command)
                .map_err(|reason| ProcfileError::Command { line, reason })?;
            first_line.insert(name.to_string(), line);
            types.insert(name.to_string(), command);
        }
        Ok(Procfile { types })
    }
}

/// One piece of a word: literal text, or a variable reference expanded when the dyno starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var {
        name: String,
        default: Option<String>,
        /// Unquoted expansions are split on whitespace, as a shell would.
        quoted: bool,
    },
}

/// A process command, split into words, with its variable references still in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    source: String,
    words: Vec<Vec<Part>>,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Command {
    /// Splits a command line into words, refusing shell operators.
    pub fn parse(source: &str) -> Result<Self, CommandError> {
        let words = split(source)?;
        if words.is_empty() {
            return Err(CommandError::Empty);
        }
        let command = Command {
            source: source.trim().to_string(),
            words,
        };
        if command.literal_word(0).as_deref() == Some(CGI) && command.words.len() < 2 {
            return Err(CommandError::CgiWithoutModule);
        }
        Ok(command)
    }

    /// A command made of literal words, as given on a command line (no expansion happens).
    pub fn from_argv(argv: &[String]) -> Result<Self, CommandError> {
        if argv.is_empty() {
            return Err(CommandError::Empty);
        }
        Ok(Command {
            source: argv.join(" "),
            words: argv.iter().map(|w| vec![Part::Text(w.clone())]).collect(),
        })
    }

    /// What `wasmdyno run COMMAND ARGS...` runs: `command` is a process type of `process_types` (the slug's
    /// Procfile), with `args` appended; otherwise, with no `args`, a command line; otherwise literal words.
    pub fn resolve(
        process_types: &BTreeMap<String, String>,
        command: &str,
        args: &[String],
    ) -> Result<Self, CommandError> {
        if let Some(line) = process_types.get(command) {
            return Ok(Command::parse(line)?.with_args(args));
        }
        if args.is_empty() {
            return Command::parse(command);
        }
        let mut argv = vec![command.to_string()];
        argv.extend(args.iter().cloned());
        Command::from_argv(&argv)
    }

    /// The command as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Does this command ask for a CGI web dyno (`cgi app.wasm ...`)?
    pub fn is_cgi(&self) -> bool {
        self.literal_word(0).as_deref() == Some(CGI)
    }

    /// The word naming the module, when it is literal (it is for every command a build accepts).
    #[cfg(feature = "platform")]
    pub fn module_word(&self) -> Option<String> {
        self.literal_word(usize::from(self.is_cgi()))
    }

    /// Appends literal arguments (`wasmdyno run worker --once`).
    pub fn with_args(mut self, args: &[String]) -> Self {
        for arg in args {
            self.source.push(' ');
            self.source.push_str(arg);
            self.words.push(vec![Part::Text(arg.clone())]);
        }
        self
    }

    fn literal_word(&self, index: usize) -> Option<String> {
        let word = self.words.get(index)?;
        let mut out = String::new();
        for part in word {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var { .. } => return None,
            }
        }
        Some(out)
    }

    /// Expands variable references from `env` into the final argv (without the `cgi` marker).
    pub fn expand(&self, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
        let mut argv = Vec::new();
        for word in self.words.iter().skip(usize::from(self.is_cgi())) {
            // A word produces fields; only unquoted expansions split, and a word that is nothing but empty
            // unquoted expansions disappears, as in a shell.
            let mut fields: Vec<String> = Vec::new();
            let mut current: Option<String> = None;
            for part in word {
                match part {
                    Part::Text(t) => current.get_or_insert_with(String::new).push_str(t),
                    Part::Var {
                        name,
                        default,
                        quoted,
                    } => {
                        let value = env(name)
                            .filter(|v| !(v.is_empty() && default.is_some()))
                            .or_else(|| default.clone())
                            .unwrap_or_default();
                        if *quoted {
                            current.get_or_insert_with(String::new).push_str(&value);
                            continue;
                        }
                        let mut pieces = value.split_ascii_whitespace().peekable();
                        let leading_space = value.starts_with(|c: char| c.is_ascii_whitespace());
                        if leading_space && let Some(cur) = current.take() {
                            fields.push(cur);
                        }
                        while let Some(piece) = pieces.next() {
                            current.get_or_insert_with(String::new).push_str(piece);
                            if pieces.peek().is_some() {
                                fields.extend(current.take());
                            }
                        }
                        let trailing_space = value.ends_with(|c: char| c.is_ascii_whitespace());
                        if trailing_space && let Some(cur) = current.take() {
                            fields.push(cur);
                        }
                    }
                }
            }
            fields.extend(current);
            argv.extend(fields);
        }
        argv
    }
}

fn split(source: &str) -> Result<Vec<Vec<Part>>, CommandError> {
    let mut words = Vec::new();
    let mut word: Vec<Part> = Vec::new();
    let mut in_word = false;
    let mut chars = source.chars().peekable();

    fn push_char(word: &mut Vec<Part>, c: char) {
        if let Some(Part::Text(t)) = word.last_mut() {
            t.push(c);
        } else {
            word.push(Part::Text(c.to_string()));
        }
    }

    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\\' => {
                let next = chars.next().ok_or(CommandError::TrailingBackslash)?;
                push_char(&mut word, next);
                in_word = true;
            }
            '\'' => {
                in_word = true;
                // Single quotes keep everything literal, and an empty '' still makes a word.
                if !matches!(word.last(), Some(Part::Text(_))) {
                    word.push(Part::Text(String::new()));
                }
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => push_char(&mut word, c),
                        None => return Err(CommandError::UnterminatedQuote("single")),
                    }
                }
            }
            '"' => {
                in_word = true;
                if !matches!(word.last(), Some(Part::Text(_))) {
                    word.push(Part::Text(String::new()));
                }
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => push_char(&mut word, c),
                            Some(c) => {
                                push_char(&mut word, '\\');
                                push_char(&mut word, c);
                            }
                            None => return Err(CommandError::UnterminatedQuote("double")),
                        },
                        Some('$') => parse_var(&mut chars, &mut word, true)?,
                        Some('`') => return Err(CommandError::Substitution),
                        Some(c) => push_char(&mut word, c),
                        None => return Err(CommandError::UnterminatedQuote("double")),
                    }
                }
            }
            '$' => {
                in_word = true;
                parse_var(&mut chars, &mut word, false)?;
            }
            '`' => return Err(CommandError::Substitution),
            '&' | '|' | ';' | '<' | '>' => {
                let mut op = c.to_string();
                if let Some(&next) = chars.peek()
                    && (next == c || (c == '>' && next == '&') || (c == '&' && next == '>'))
                {
                    op.push(next);
                }
                return Err(CommandError::ShellOperator(op));
            }
            c => {
                push_char(&mut word, c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

fn parse_var(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    word: &mut Vec<Part>,
    quoted: bool,
) -> Result<(), CommandError> {
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_';
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    match chars.peek().copied() {
        Some('{') => {
            chars.next();
            let mut inner = String::new();
            loop {
                match chars.next() {
                    Some('}') => break,
                    Some(c) => inner.push(c),
                    None => return Err(CommandError::UnterminatedBrace),
                }
            }
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n.to_string(), Some(d.to_string())),
                None => (inner.clone(), None),
            };
            if !name.starts_with(is_start) || !name.chars().all(is_name) {
                return Err(CommandError::BadVariable(inner));
            }
            word.push(Part::Var {
                name,
                default,
                quoted,
            });
        }
        Some('(') => return Err(CommandError::Substitution),
        Some(c) if is_start(c) => {
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if !is_name(c) {
                    break;
                }
                name.push(c);
                chars.next();
            }
            word.push(Part::Var {
                name,
                default: None,
                quoted,
            });
        }
        // A `$` not followed by a name is just a dollar sign.
        _ => match word.last_mut() {
            Some(Part::Text(t)) => t.push('$'),
            _ => word.push(Part::Text("$".into())),
        },
    }
    Ok(())
}

#[cfg(all(test, feature = "platform"))]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn argv(command: &str, pairs: &[(&str, &str)]) -> Vec<String> {
        Command::parse(command).unwrap().expand(&env(pairs))
    }

    #[test]
    fn parses_types_comments_and_blank_lines() {
        let p = Procfile::parse(
            "# a comment\n\nweb: app.wasm --port $PORT\nworker:   worker.wasm  \nrelease: migrate.wasm\n",
        )
        .unwrap();
        assert_eq!(
            p.types.keys().collect::<Vec<_>>(),
            ["release", "web", "worker"]
        );
        assert_eq!(p.types["worker"].as_str(), "worker.wasm");
        assert_eq!(
            p.types["web"].expand(&env(&[("PORT", "5000")])),
            ["app.wasm", "--port", "5000"]
        );
    }

    #[test]
    fn rejections_name_the_line() {
        let cases = [
            ("web app.wasm\n", "line 1: expected `type: command`"),
            (
                "web: a.wasm\nweb: b.wasm\n",
                "line 2: process type \"web\" is already defined on line 1",
            ),
            (
                "\nweb:   \n",
                "line 2: process type \"web\" has an empty command",
            ),
            ("w eb: a.wasm", "line 1: process type \"w eb\" may only use"),
            ("web: a.wasm && b.wasm", "line 1: shell operator `&&`"),
            ("# c\nweb: a.wasm | tee x", "line 2: shell operator `|`"),
            ("web: a.wasm > out.txt", "line 1: shell operator `>`"),
            ("web: a.wasm; b.wasm", "line 1: shell operator `;`"),
            ("web: a.wasm 'oops", "line 1: unterminated single quote"),
            ("web: a.wasm $(date)", "line 1: command substitution"),
            ("web: cgi", "line 1: `cgi` must be followed by the module"),
        ];
        for (text, expected) in cases {
            let err = Procfile::parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(
            argv(
                r#"app.wasm "two words" 'single $NOT' esc\ aped "q\"uote" ''"#,
                &[]
            ),
            [
                "app.wasm",
                "two words",
                "single $NOT",
                "esc aped",
                "q\"uote",
                ""
            ]
        );
        assert_eq!(
            argv("app.wasm 'a&&b' \"x|y\" \\;", &[]),
            ["app.wasm", "a&&b", "x|y", ";"]
        );
        assert_eq!(
            argv("app.wasm cost=$5 $", &[]),
            ["app.wasm", "cost=$5", "$"]
        );
    }

    #[test]
    fn expands_variables_at_start() {
        let e = [("PORT", "5000"), ("FLAGS", "-a -b"), ("EMPTY", "")];
        assert_eq!(argv("a.wasm --port=${PORT}", &e), ["a.wasm", "--port=5000"]);
        assert_eq!(argv("a.wasm $FLAGS end", &e), ["a.wasm", "-a", "-b", "end"]);
        assert_eq!(argv("a.wasm \"$FLAGS\"", &e), ["a.wasm", "-a -b"]);
        assert_eq!(argv("a.wasm $EMPTY $MISSING x", &e), ["a.wasm", "x"]);
        assert_eq!(argv("a.wasm \"$MISSING\"", &e), ["a.wasm", ""]);
        assert_eq!(
            argv("a.wasm ${MISSING:-8080} ${EMPTY:-d}", &e),
            ["a.wasm", "8080", "d"]
        );
        assert_eq!(argv("a.wasm x${FLAGS}y", &e), ["a.wasm", "x-a", "-by"]);
        assert!(matches!(
            Command::parse("a.wasm ${1BAD}"),
            Err(CommandError::BadVariable(_))
        ));
    }

    #[test]
    fn cgi_and_module_word() {
        let c = Command::parse("cgi app.wasm --x").unwrap();
        assert!(c.is_cgi());
        assert_eq!(c.module_word().as_deref(), Some("app.wasm"));
        assert_eq!(c.expand(&env(&[])), ["app.wasm", "--x"]);
        let c = Command::parse("$MOD arg").unwrap();
        assert_eq!(c.module_word(), None);
    }
}
