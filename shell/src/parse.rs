//! Command lines: words (quotes, escapes, `$VAR`, `~`), redirections, pipes, and `;`, `&&`, `||` between
//! pipelines. Words keep their variables unexpanded: they expand when their command runs, so `A=1; echo $A` sees
//! the assignment.

/// A piece of a word.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Literal text; `quoted` text is never a glob pattern.
    Text { text: String, quoted: bool },
    /// `$NAME`, `${NAME}`, `$?`, `$0`..`$9`, `$#`; `~` is `HOME`.
    Var(String),
}

pub type Word = Vec<Piece>;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RedirectKind {
    /// `< FILE`
    In,
    /// `> FILE`
    Out,
    /// `>> FILE`
    Append,
    /// `2> FILE`
    Err,
    /// `2>> FILE`
    ErrAppend,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Redirect {
    pub kind: RedirectKind,
    pub target: Word,
}

/// One command of a pipeline: its words and redirections; `err_to_out` is `2>&1`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stage {
    pub words: Vec<Word>,
    pub redirects: Vec<Redirect>,
    pub err_to_out: bool,
}

/// How a pipeline follows the one before it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Then {
    /// `;` or a new line: always.
    Always,
    /// `&&`: if the one before succeeded.
    IfOk,
    /// `||`: if the one before failed.
    IfFailed,
}

/// A parsed line: pipelines, each with how it follows the one before.
pub type List = Vec<(Then, Vec<Stage>)>;

#[derive(Debug, PartialEq)]
enum Token {
    Word(Word),
    Pipe,
    And,
    Or,
    Semi,
    Redirect(RedirectKind),
    ErrToOut,
}

/// Why a line did not parse. `Incomplete` lines (an open quote, a trailing `\`, `|`, `&&` or `||`) may continue on
/// the next line.
#[derive(Debug, PartialEq)]
pub enum ParseError {
    Incomplete,
    Syntax(String),
}

pub fn parse(line: &str) -> Result<List, ParseError> {
    let tokens = lex(line)?;
    let mut list: List = Vec::new();
    let mut then = Then::Always;
    let mut stages: Vec<Stage> = Vec::new();
    let mut stage = Stage::default();
    let mut tokens = tokens.into_iter().peekable();
    let near = |t: &Token| format!("syntax error near `{}`", describe(t));
    while let Some(token) = tokens.next() {
        match token {
            Token::Word(word) => stage.words.push(word),
            Token::Redirect(kind) => match tokens.next() {
                Some(Token::Word(target)) => stage.redirects.push(Redirect { kind, target }),
                Some(other) => return Err(ParseError::Syntax(near(&other))),
                None => {
                    return Err(ParseError::Syntax(
                        "syntax error: a redirection names no file".into(),
                    ));
                }
            },
            Token::ErrToOut => stage.err_to_out = true,
            Token::Pipe | Token::And | Token::Or | Token::Semi => {
                if stage.words.is_empty() {
                    if token == Token::Semi && stages.is_empty() && stage.redirects.is_empty() {
                        continue;
                    }
                    return Err(ParseError::Syntax(near(&token)));
                }
                stages.push(std::mem::take(&mut stage));
                if token == Token::Pipe {
                    if tokens.peek().is_none() {
                        return Err(ParseError::Incomplete);
                    }
                    continue;
                }
                list.push((then, std::mem::take(&mut stages)));
                then = match token {
                    Token::And => Then::IfOk,
                    Token::Or => Then::IfFailed,
                    _ => Then::Always,
                };
                if then != Then::Always && tokens.peek().is_none() {
                    return Err(ParseError::Incomplete);
                }
            }
        }
    }
    if !stage.words.is_empty() {
        stages.push(stage);
    } else if !stage.redirects.is_empty() || stage.err_to_out {
        return Err(ParseError::Syntax(
            "syntax error: a redirection without a command".into(),
        ));
    }
    if !stages.is_empty() {
        list.push((then, stages));
    }
    Ok(list)
}

fn describe(token: &Token) -> &'static str {
    match token {
        Token::Word(_) => "word",
        Token::Pipe => "|",
        Token::And => "&&",
        Token::Or => "||",
        Token::Semi => ";",
        Token::Redirect(RedirectKind::In) => "<",
        Token::Redirect(RedirectKind::Out) => ">",
        Token::Redirect(RedirectKind::Append) => ">>",
        Token::Redirect(RedirectKind::Err) => "2>",
        Token::Redirect(RedirectKind::ErrAppend) => "2>>",
        Token::ErrToOut => "2>&1",
    }
}

/// A word being read: its pieces, and whether anything (even `''`) made it a word.
#[derive(Default)]
struct Building {
    pieces: Word,
    started: bool,
}

impl Building {
    fn text(&mut self, c: char, quoted: bool) {
        self.started = true;
        match self.pieces.last_mut() {
            Some(Piece::Text { text, quoted: q }) if *q == quoted => text.push(c),
            _ => self.pieces.push(Piece::Text {
                text: c.to_string(),
                quoted,
            }),
        }
    }

    fn finish(&mut self, tokens: &mut Vec<Token>) {
        if self.started {
            tokens.push(Token::Word(std::mem::take(&mut self.pieces)));
            self.started = false;
        }
    }
}

fn lex(line: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = line.chars().collect();
    let mut tokens = Vec::new();
    let mut word = Building::default();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            ' ' | '\t' | '\r' | '\n' => word.finish(&mut tokens),
            '#' if !word.started => break,
            '|' | '&' | ';' | '<' | '>' => {
                word.finish(&mut tokens);
                let (token, len) = match (c, next) {
                    ('|', Some('|')) => (Token::Or, 2),
                    ('|', _) => (Token::Pipe, 1),
                    ('&', Some('&')) => (Token::And, 2),
                    ('&', _) => {
                        return Err(ParseError::Syntax(
                            "background jobs (`&`) are not supported: a one-off dyno runs one command at a time"
                                .into(),
                        ));
                    }
                    (';', _) => (Token::Semi, 1),
                    ('<', _) => (Token::Redirect(RedirectKind::In), 1),
                    ('>', Some('>')) => (Token::Redirect(RedirectKind::Append), 2),
                    _ => (Token::Redirect(RedirectKind::Out), 1),
                };
                tokens.push(token);
                i += len;
                continue;
            }
            '2' if !word.started && next == Some('>') => {
                let rest: String = chars[i..chars.len().min(i + 4)].iter().collect();
                let (token, len) = if rest.starts_with("2>&1") {
                    (Token::ErrToOut, 4)
                } else if rest.starts_with("2>>") {
                    (Token::Redirect(RedirectKind::ErrAppend), 3)
                } else {
                    (Token::Redirect(RedirectKind::Err), 2)
                };
                tokens.push(token);
                i += len;
                continue;
            }
            '\'' => {
                word.started = true;
                let end = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '\'')
                    .ok_or(ParseError::Incomplete)?;
                for &q in &chars[i + 1..i + 1 + end] {
                    word.text(q, true);
                }
                i += end + 2;
                continue;
            }
            '"' => {
                word.started = true;
                i += 1;
                loop {
                    let Some(&q) = chars.get(i) else {
                        return Err(ParseError::Incomplete);
                    };
                    match q {
                        '"' => break,
                        '\\' if matches!(chars.get(i + 1), Some('"' | '\\' | '$' | '`')) => {
                            word.text(chars[i + 1], true);
                            i += 1;
                        }
                        '\\' if chars.get(i + 1) == Some(&'\n') => i += 1,
                        '$' => {
                            if let Some((name, len)) = variable(&chars[i + 1..])? {
                                word.pieces.push(Piece::Var(name));
                                i += len;
                            } else {
                                word.text('$', true);
                            }
                        }
                        other => word.text(other, true),
                    }
                    i += 1;
                }
            }
            '\\' => match next {
                None => return Err(ParseError::Incomplete),
                Some('\n') => i += 1,
                Some(escaped) => {
                    word.text(escaped, true);
                    i += 1;
                }
            },
            '$' => match variable(&chars[i + 1..])? {
                Some((name, len)) => {
                    word.started = true;
                    word.pieces.push(Piece::Var(name));
                    i += len;
                }
                None => word.text('$', false),
            },
            '~' if !word.started && matches!(next, None | Some('/' | ' ' | '\t' | '\n')) => {
                word.started = true;
                word.pieces.push(Piece::Var("HOME".into()));
            }
            other => word.text(other, false),
        }
        i += 1;
    }
    word.finish(&mut tokens);
    Ok(tokens)
}

/// The variable after a `$`: its name and how many characters it took, or `None` for a lone `$`.
fn variable(rest: &[char]) -> Result<Option<(String, usize)>, ParseError> {
    match rest.first() {
        Some('{') => {
            let end = rest
                .iter()
                .position(|&c| c == '}')
                .ok_or(ParseError::Incomplete)?;
            let name: String = rest[1..end].iter().collect();
            if !is_name(&name) && !is_special(&name) {
                return Err(ParseError::Syntax(format!("${{{name}}}: bad substitution")));
            }
            Ok(Some((name, end + 1)))
        }
        Some(&c) if c == '?' || c == '#' || c.is_ascii_digit() => Ok(Some((c.to_string(), 1))),
        Some(&c) if c == '_' || c.is_ascii_alphabetic() => {
            let len = rest
                .iter()
                .take_while(|c| **c == '_' || c.is_ascii_alphanumeric())
                .count();
            Ok(Some((rest[..len].iter().collect(), len)))
        }
        _ => Ok(None),
    }
}

pub fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

fn is_special(name: &str) -> bool {
    matches!(name, "?" | "#") || (name.len() == 1 && name.as_bytes()[0].is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Piece {
        Piece::Text {
            text: s.into(),
            quoted: false,
        }
    }

    #[test]
    fn pipes_redirects_and_connectors() {
        let list = parse("ls -l | wc -l > out.txt && echo ok || echo no; cat<in 2>&1").unwrap();
        assert_eq!(list.len(), 4);
        assert_eq!(list[0].1.len(), 2);
        assert_eq!(list[0].1[1].redirects[0].kind, RedirectKind::Out);
        assert_eq!(list[1].0, Then::IfOk);
        assert_eq!(list[2].0, Then::IfFailed);
        assert!(list[3].1[0].err_to_out);
        assert_eq!(list[3].1[0].redirects[0].target, vec![text("in")]);
    }

    #[test]
    fn quotes_and_variables() {
        let list = parse(r#"echo 'a $B' "c $D${E}" f\ g $? ~/x"#).unwrap();
        let words = &list[0].1[0].words;
        assert_eq!(
            words[1],
            vec![Piece::Text {
                text: "a $B".into(),
                quoted: true
            }]
        );
        assert_eq!(
            words[2],
            vec![
                Piece::Text {
                    text: "c ".into(),
                    quoted: true
                },
                Piece::Var("D".into()),
                Piece::Var("E".into())
            ]
        );
        assert_eq!(
            words[3],
            vec![
                text("f"),
                Piece::Text {
                    text: " ".into(),
                    quoted: true
                },
                text("g")
            ]
        );
        assert_eq!(words[4], vec![Piece::Var("?".into())]);
        assert_eq!(words[5], vec![Piece::Var("HOME".into()), text("/x")]);
        assert_eq!(parse("echo ''").unwrap()[0].1[0].words.len(), 2);
    }

    #[test]
    fn unfinished_lines_continue_and_bad_ones_say_why() {
        for line in ["echo 'open", "echo \"open", "ls |", "true &&", "echo \\"] {
            assert_eq!(parse(line), Err(ParseError::Incomplete), "{line}");
        }
        for line in ["| ls", "ls > ", "ls && && ls", "sleep 1 &", "echo ${A-b}"] {
            assert!(matches!(parse(line), Err(ParseError::Syntax(_))), "{line}");
        }
        assert_eq!(parse("  # a comment").unwrap(), vec![]);
    }
}
