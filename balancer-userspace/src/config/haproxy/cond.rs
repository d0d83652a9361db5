//! Conditional blocks and messages of a haproxy.cfg, on the lexed lines
//! (before the sections are read), as HAProxy 2.6.12 evaluates them; each
//! rule below was checked with `haproxy -c` on small files.
//!
//! - `.if COND` / `.elif COND` / `.else` / `.endif`, nested. The lines of a
//!   block not taken are tokenized (the lexer has run on every line, so
//!   their syntax errors are errors) and then dropped. A condition is
//!   evaluated only where it could be taken: the `.if` of a block inside
//!   one not taken, and an `.elif` after a taken branch, are not evaluated
//!   (nor checked). `.else` and `.endif` take no argument; `.elif` and
//!   `.else` after `.else` are errors; so are a lone `.elif`, `.else` or
//!   `.endif`, and a block still open at the end of the file (named here by
//!   the line of its `.if`; HAProxy names the last line).
//! - A condition is the words after `.if`, joined with spaces, read as an
//!   expression: terms joined by `&&` and `||` (`&&` binds tighter), `!`
//!   negates a term, parentheses group. Spaces between tokens are free,
//!   none may come between a predicate's name and its `(`. An empty
//!   condition is false. A term is
//!   - a number as C's `strtol` with base 0 reads it (`010` octal, `0x1f`
//!     hex, a sign allowed; `1x` and `1.5` are errors): true if not zero;
//!   - `defined(VAR)`: the environment variable is set (even empty);
//!   - `streq(A,B)`, `strneq(A,B)`: string (in)equality, the arguments
//!     taken byte for byte between `(`, `,` and `)` (spaces included);
//!   - `version_atleast(V)`, `version_before(V)`: V against 2.6.12, the
//!     version balancer reads its files as. A version is up to four
//!     dot-separated numbers (missing ones are 0, reading stops at the
//!     first non-digit: `abc` is 0), then `-devN`, `-preN` or `-rcN`
//!     (before the release, in that order) or a release, then `-N` after a
//!     release counting commits past it (`2.6.12-1` is after 2.6.12); any
//!     other suffix is ignored;
//!   - `feature(NAME)`: NAME is one of [`super::FEATURES`] (HAProxy's build
//!     options; an empty name is true, as in HAProxy, whose feature list
//!     is never empty).
//! - `.diag`, `.notice`, `.warning MSG` in a taken block: a warning with
//!   the line (HAProxy prints `.diag` only with `-dD`; here every message
//!   is shown); `.alert MSG`: an error with the line, as HAProxy refuses
//!   the file. They take one word (quote a message with spaces).
//! - Any other word starting with `.` is an error (HAProxy: unknown
//!   directive).

use std::cmp::Ordering;

use super::{CfgError, FEATURES, Warning, lex::Line};

/// The version balancer reads configurations as.
const VERSION: Version = Version {
    numbers: [2, 6, 12, 0],
    stage: Stage::Release,
    stage_number: 0,
    commits: 0,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Dev,
    Pre,
    Rc,
    Release,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Version {
    numbers: [u64; 4],
    stage: Stage,
    stage_number: u64,
    commits: u64,
}

/// Leading decimal digits of `s` (0 if none; saturating) and the rest.
fn digits(s: &str) -> (u64, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n = s[..end].bytes().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    (n, &s[end..])
}

fn version(s: &str) -> Version {
    let mut v = Version {
        numbers: [0; 4],
        stage: Stage::Release,
        stage_number: 0,
        commits: 0,
    };
    let mut rest = s;
    for (i, n) in v.numbers.iter_mut().enumerate() {
        if i > 0 {
            match rest.strip_prefix('.') {
                Some(r) => rest = r,
                None => break,
            }
        }
        let (d, r) = digits(rest);
        *n = d;
        rest = r;
    }
    for (tag, stage) in [
        ("-dev", Stage::Dev),
        ("-pre", Stage::Pre),
        ("-rc", Stage::Rc),
    ] {
        if let Some(r) = rest.strip_prefix(tag) {
            v.stage = stage;
            v.stage_number = digits(r).0;
            return v;
        }
    }
    if let Some(r) = rest.strip_prefix('-')
        && r.starts_with(|c: char| c.is_ascii_digit())
    {
        v.commits = digits(r).0;
    }
    v
}

/// What an open block is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Its taken branch is the current one.
    Taking,
    /// No branch taken yet (the next `.elif`/`.else` may be).
    Waiting,
    /// A branch was taken before this one.
    Done,
    /// Inside a block not taken: nothing in it is.
    Dead,
}

struct Block {
    state: State,
    after_else: bool,
    line: usize,
}

fn fail(line: usize, keyword: &str, reason: impl Into<String>) -> CfgError {
    CfgError {
        line,
        keyword: keyword.to_owned(),
        reason: reason.into(),
    }
}

/// The lines of the blocks taken, directives removed; messages as warnings.
pub fn select(
    lines: Vec<Line>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Vec<Line>, Vec<Warning>), CfgError> {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let mut stack: Vec<Block> = Vec::new();
    for l in lines {
        let k = l.words[0].as_str();
        let active = stack.last().is_none_or(|b| b.state == State::Taking);
        let n = l.number;
        let no_args = || {
            if let Some(a) = l.words.get(1) {
                Err(fail(n, k, format!("unexpected argument {a:?}")))
            } else {
                Ok(())
            }
        };
        match k {
            ".if" => {
                let state = if !active {
                    State::Dead
                } else if eval(&l, env)? {
                    State::Taking
                } else {
                    State::Waiting
                };
                stack.push(Block {
                    state,
                    after_else: false,
                    line: n,
                });
            }
            ".elif" | ".else" => {
                if k == ".else" {
                    no_args()?;
                }
                let Some(b) = stack.last_mut() else {
                    return Err(fail(n, k, format!("lone '{k}' with no matching '.if'")));
                };
                if b.after_else {
                    return Err(fail(n, k, format!("'{k}' after '.else' is not permitted")));
                }
                b.after_else = k == ".else";
                b.state = match b.state {
                    State::Waiting if k == ".else" || eval(&l, env)? => State::Taking,
                    State::Waiting => State::Waiting,
                    State::Taking | State::Done => State::Done,
                    State::Dead => State::Dead,
                };
            }
            ".endif" => {
                no_args()?;
                if stack.pop().is_none() {
                    return Err(fail(n, k, "lone '.endif' with no matching '.if'"));
                }
            }
            ".diag" | ".notice" | ".warning" | ".alert" => {
                if !active {
                    continue;
                }
                if let Some(extra) = l.words.get(2) {
                    return Err(fail(
                        n,
                        k,
                        format!(
                            "unexpected argument {extra:?}: quote a message with spaces \
                             (HAProxy takes one word)"
                        ),
                    ));
                }
                let msg = l.words.get(1).cloned().unwrap_or_default();
                if k == ".alert" {
                    return Err(fail(n, k, msg));
                }
                warnings.push(Warning {
                    line: n,
                    text: format!("`{k}`: {msg}"),
                });
            }
            _ if k.starts_with('.') => {
                if active {
                    return Err(fail(n, k, "unknown directive"));
                }
            }
            _ => {
                if active {
                    out.push(l);
                }
            }
        }
    }
    if let Some(b) = stack.last() {
        return Err(fail(
            b.line,
            ".if",
            "non-terminated '.if' block (no '.endif' before the end of the file)",
        ));
    }
    Ok((out, warnings))
}

/// The condition of an `.if` or `.elif` line.
fn eval(l: &Line, env: &dyn Fn(&str) -> Option<String>) -> Result<bool, CfgError> {
    let text = l.words[1..].join(" ");
    let mut p = Parser {
        s: text.as_bytes(),
        text: &text,
        i: 0,
        env,
    };
    p.skip();
    if p.i == p.s.len() {
        return Ok(false);
    }
    let v = p.or().map_err(|(at, why)| {
        fail(
            l.number,
            &l.words[0],
            format!(
                "{why} in conditional expression {text:?} at position {}",
                at + 1
            ),
        )
    })?;
    if p.i < p.s.len() {
        return Err(fail(
            l.number,
            &l.words[0],
            format!(
                "unexpected character '{}' at the end of conditional expression {text:?} at \
                 position {}",
                char::from(p.s[p.i]),
                p.i + 1
            ),
        ));
    }
    Ok(v)
}

/// A recursive-descent reader of a condition; errors are (byte offset,
/// why).
struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
    env: &'a dyn Fn(&str) -> Option<String>,
}

type Res<T> = Result<T, (usize, String)>;

impl Parser<'_> {
    fn skip(&mut self) {
        while self.s.get(self.i).is_some_and(|&b| b == b' ' || b == b'\t') {
            self.i += 1;
        }
    }

    fn eat(&mut self, op: &str) -> bool {
        self.skip();
        if self.text[self.i..].starts_with(op) {
            self.i += op.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Res<bool> {
        let mut v = self.and()?;
        while self.eat("||") {
            v |= self.and()?;
        }
        Ok(v)
    }

    fn and(&mut self) -> Res<bool> {
        let mut v = self.term()?;
        while self.eat("&&") {
            v &= self.term()?;
        }
        Ok(v)
    }

    fn term(&mut self) -> Res<bool> {
        self.skip();
        let start = self.i;
        let unparsable = |at: usize, s: &str| (at, format!("unparsable term {:?}", &s[at..]));
        if self.eat("!") {
            return Ok(!self.term()?);
        }
        if self.eat("(") {
            let v = self.or()?;
            if !self.eat(")") {
                return Err((start, "expected ')'".into()));
            }
            return Ok(v);
        }
        if let Some(n) = self.number() {
            return Ok(n);
        }
        let name_end = self.text[start..]
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .map_or(self.text.len(), |e| start + e);
        let name = &self.text[start..name_end];
        let arity = match name {
            "defined" | "feature" | "version_atleast" | "version_before" => 1,
            "streq" | "strneq" => 2,
            _ => return Err(unparsable(start, self.text)),
        };
        if self.s.get(name_end) != Some(&b'(') {
            return Err((name_end, format!("expected '(' after predicate '{name}'")));
        }
        self.i = name_end + 1;
        let mut args = Vec::new();
        loop {
            let end = self.text[self.i..]
                .find([',', ')'])
                .map(|e| self.i + e)
                .ok_or_else(|| {
                    (
                        self.s.len(),
                        format!(
                            "expected ')' in argument {} of predicate '{name}'",
                            args.len() + 1
                        ),
                    )
                })?;
            args.push(&self.text[self.i..end]);
            self.i = end + 1;
            if self.s[end] == b')' {
                break;
            }
            if args.len() == arity {
                return Err((
                    end,
                    format!("expected ')' after {arity} argument(s) of predicate '{name}'"),
                ));
            }
        }
        if args.len() < arity {
            return Err((
                self.i - 1,
                format!(
                    "missing arguments (got {}/{arity}) of predicate '{name}'",
                    args.len()
                ),
            ));
        }
        Ok(match name {
            "defined" => (self.env)(args[0]).is_some(),
            "feature" => args[0].is_empty() || FEATURES.contains(&args[0]),
            "version_atleast" => VERSION.cmp(&version(args[0])) != Ordering::Less,
            "version_before" => VERSION.cmp(&version(args[0])) == Ordering::Less,
            "streq" => args[0] == args[1],
            _ => args[0] != args[1],
        })
    }

    /// A number as `strtol(.., 0)` reads it, if one starts here: whether it
    /// is not zero.
    fn number(&mut self) -> Option<bool> {
        let rest = &self.text[self.i..];
        let unsigned = rest.strip_prefix(['+', '-']).unwrap_or(rest);
        let sign = rest.len() - unsigned.len();
        let (radix, body) = match unsigned.strip_prefix("0x").or(unsigned.strip_prefix("0X")) {
            Some(h) if h.starts_with(|c: char| c.is_ascii_hexdigit()) => (16, h),
            _ if unsigned.starts_with('0') => (8, unsigned),
            _ => (10, unsigned),
        };
        let len = body
            .find(|c: char| !c.is_digit(radix))
            .unwrap_or(body.len());
        if len == 0 {
            return None;
        }
        self.i += sign + (unsigned.len() - body.len()) + len;
        Some(body[..len].bytes().any(|b| b != b'0'))
    }
}
