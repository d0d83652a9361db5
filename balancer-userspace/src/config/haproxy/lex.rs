//! Tokenizer for HAProxy's configuration language (`haproxy.cfg`): splits a
//! file into lines of words exactly as HAProxy 2.6 does (its line reader
//! `readcfgfile()` and word splitter `parse_line()`). Every rule below was
//! checked against HAProxy 2.6.12 (`haproxy -c` on small files, and response
//! headers set from the tokens); the tests name the experiment behind each.
//!
//! Lines
//! - Lines end at LF. A file whose last line has no LF is an error (HAProxy:
//!   "Missing LF on last line"); an empty text is fine. A NUL character is an
//!   error ("Stray NUL character", or "Missing LF" on the last line).
//! - Leading spaces, tabs, VT, FF and CR are skipped. A CR anywhere else ends
//!   the line (so CRLF files work), except inside a run of separators.
//! - No line continuation: a trailing backslash is a literal backslash.
//! - No length limit on a line or a word. At most 64 words a line
//!   (`MAX_LINE_ARGS`); HAProxy 2.6 counts a space, comment or empty word
//!   after the 64th word as a 65th word, and so does this tokenizer.
//! - A line whose first word is empty (`"" foo`, `"$UNSET" foo`, `\x00 foo`)
//!   is skipped whole, as HAProxy does, like blank and comment-only lines.
//! - A line starting with `[` (after spaces) is a scope declaration
//!   (`[name]`, used by HAProxy only for SPOE sections): it is checked as
//!   HAProxy checks it and then skipped; it yields no [`Line`].
//!
//! Words
//! - Separators: space, tab, VT, FF. `#` outside quotes starts a comment,
//!   even in the middle of a word (`a#b` is `a`).
//! - Backslash, outside single quotes: `\ ` space, `\\`, `\#`, `\'`, `\"`,
//!   `\t`, `\n`, `\r`, `\xNN` (two hex digits, else an error); `\$` is `$`
//!   inside double quotes only. Any other backslash is kept as is (`\q` stays
//!   `\q`, `\$` outside double quotes stays `\$`, and `\<TAB>` is a
//!   backslash followed by a separator).
//! - Double quotes keep spaces, tabs, `#` and `'`; escapes and environment
//!   variables are processed inside them. Single quotes keep everything
//!   literally (no escapes). Quoted and unquoted parts join into one word
//!   (`a"b c"d` is `ab cd`).
//! - An empty quoted string is an empty word (`a "" b` is three words). Empty
//!   words at the end of a line are dropped: HAProxy's keyword parsers cannot
//!   tell them from no word at all.
//! - A `\x00` ends the word for every HAProxy keyword parser: the word is cut
//!   there.
//! - Words must be valid UTF-8: a word made invalid by `\xNN` escapes is an
//!   error here (HAProxy would take the raw bytes).
//!
//! Environment variables (inside double quotes only; `$FOO` outside them is
//! literal text)
//! - `$NAME` and `${NAME}`: a name starts with a letter or `_` and goes on
//!   with letters, digits and `_`. Anything else after `$` is an error.
//! - An unset variable expands to nothing, with no warning.
//! - `${NAME-default}`: the default is used only when NAME is unset (not when
//!   empty); it runs to the next `}` and is taken raw (quotes, `#`, `\`, `$`
//!   included).
//! - `${NAME[*]}` splits the value on whitespace into several words (a
//!   leading space in the value gives an empty word first).
//! - A value is inserted raw (no quote or escape processing in it).
//! - Pseudo-variables: `$.LINE` is the line number. `$.FILE` and `$.SECTION`
//!   are errors here (HAProxy fills in the file name and the current section,
//!   which a tokenizer does not know); any other `$.NAME` is an error in
//!   HAProxy too.
//!
//! Errors carry HAProxy's own wording (positions are 1-based byte columns
//! in the line, leading spaces included, as HAProxy counts them). Where a line
//! has several problems, the one HAProxy reports first is reported.
//!
//! Not done here: conditional blocks (`.if`, `.elif`, `.else`, `.endif`) and
//! `.diag`/`.notice`/`.warning`/`.alert` come out as ordinary lines, which
//! `cond` then applies (HAProxy tokenizes the lines of a skipped `.if` block
//! too, so their errors are errors there as well). HAProxy 2.6 silently drops a
//! last line without LF that is 2047 bytes long (and some other 2^n - 1
//! lengths), a bug of its line-buffer growth; here that line gets the
//! "Missing LF" error like any other.

/// HAProxy's `MAX_LINE_ARGS`: words allowed on one line.
const MAX_LINE_ARGS: usize = 64;

/// One logical configuration line split into words as HAProxy 2.6 does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based line number in the file.
    pub number: usize,
    pub words: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LexError {
    pub line: usize,
    pub message: String,
}

/// Split `text` into lines of words. Blank and comment-only lines are
/// skipped. `env` looks up environment variables (the caller passes
/// `|k| std::env::var(k).ok()`; tests pass a map).
///
/// As in HAProxy 2.6, the text must end with a line feed (or be empty), and
/// lines whose first word is empty and scope declarations (`[name]`) are
/// skipped too. See the module documentation for every rule.
pub fn lex(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Line>, LexError> {
    let mut lines = Vec::new();
    let mut rest = text.as_bytes();
    let mut number = 0;
    while !rest.is_empty() {
        number += 1;
        let (raw, has_lf) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let raw = &rest[..i];
                rest = &rest[i + 1..];
                (raw, true)
            }
            None => {
                let raw = rest;
                rest = &[];
                (raw, false)
            }
        };
        // HAProxy reads lines as C strings: a NUL ends what it sees of the
        // line, then is reported once that line has been processed.
        let nul = raw.iter().position(|&b| b == 0);
        let content = &raw[..nul.unwrap_or(raw.len())];
        if let Some(words) = lex_line(content, number, env)? {
            lines.push(Line { number, words });
        }
        if let Some(at) = nul {
            let message = if has_lf && !rest.is_empty() {
                format!("Stray NUL character at position {}", at + 1)
            } else {
                missing_lf(at + 1)
            };
            return Err(LexError {
                line: number,
                message,
            });
        }
        if !has_lf {
            return Err(LexError {
                line: number,
                message: missing_lf(raw.len() + 1),
            });
        }
    }
    Ok(lines)
}

fn missing_lf(position: usize) -> String {
    format!("Missing LF on last line, file might have been truncated at position {position}")
}

/// C's `isspace()` in the C locale.
fn is_space(b: u8) -> bool {
    b == b' ' || (b'\t'..=b'\r').contains(&b)
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// A byte as HAProxy's `%c` would show it, non-printable ones escaped.
fn show_byte(b: u8) -> String {
    if b.is_ascii_graphic() || b == b' ' {
        (b as char).to_string()
    } else {
        format!("\\x{b:02x}")
    }
}

/// One line (without its LF, cut at a NUL): its words, or `None` for a line
/// HAProxy skips.
fn lex_line(
    line: &[u8],
    number: usize,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Vec<String>>, LexError> {
    let start = line
        .iter()
        .position(|&b| !is_space(b))
        .unwrap_or(line.len());
    if line.get(start) == Some(&b'[') {
        check_scope(line, start).map_err(|message| LexError {
            line: number,
            message,
        })?;
        return Ok(None);
    }
    let words = Splitter::new(line, number, env)
        .split(start)
        .map_err(|message| LexError {
            line: number,
            message,
        })?;
    finish(words, number)
}

/// HAProxy's check of a scope declaration `[name]`.
fn check_scope(line: &[u8], open: usize) -> Result<(), String> {
    let beg = open + 1;
    let end = line[beg..].iter().position(|&b| b == b']').map(|k| beg + k);
    let Some(end) = end.filter(|&end| end > beg) else {
        return Err("empty scope name is forbidden".into());
    };
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'_' | b'-');
    if let Some(&bad) = line[beg..end].iter().find(|b| !allowed(b)) {
        return Err(format!(
            "character '{}' is not permitted in a scope name",
            show_byte(bad)
        ));
    }
    let after = line[end + 1..]
        .iter()
        .copied()
        .find(|&b| !is_space(b))
        .unwrap_or(0);
    if after != 0 && after != b'#' {
        return Err(format!(
            "character '{}' is not permitted after scope declaration",
            show_byte(after)
        ));
    }
    Ok(())
}

/// The words HAProxy's keyword parsers see: each cut at a NUL, trailing
/// empty ones dropped, the line skipped if its first word is empty.
fn finish(words: Vec<Vec<u8>>, number: usize) -> Result<Option<Vec<String>>, LexError> {
    let mut words: Vec<Vec<u8>> = words
        .into_iter()
        .map(|mut w| {
            if let Some(nul) = w.iter().position(|&b| b == 0) {
                w.truncate(nul);
            }
            w
        })
        .collect();
    while words.last().is_some_and(|w| w.is_empty()) {
        words.pop();
    }
    if words.first().is_none_or(|w| w.is_empty()) {
        return Ok(None);
    }
    words
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            String::from_utf8(w).map_err(|_| LexError {
                line: number,
                message: format!(
                    "word {} is not valid UTF-8 after its \\x escapes (HAProxy would take the raw bytes; this reader needs text)",
                    i + 1
                ),
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// HAProxy's `parse_line()` with the options the configuration reader uses
/// (environment, both quotes, backslash, `#` comments, word expansion).
struct Splitter<'a> {
    line: &'a [u8],
    number: usize,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// Words so far; the last one is being built. Bytes, as HAProxy emits
    /// them (`\x00` included).
    words: Vec<Vec<u8>>,
    /// Bytes HAProxy has written to its output buffer so far: each word
    /// and one NUL after each (what its "too many words" position counts).
    out_pos: usize,
    /// Where the 64th word starts in that buffer.
    last_start: usize,
    /// Set when a 65th word starts: HAProxy's message for it.
    too_many: Option<String>,
}

impl<'a> Splitter<'a> {
    fn new(line: &'a [u8], number: usize, env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Splitter {
            line,
            number,
            env,
            words: vec![Vec::new()],
            out_pos: 0,
            last_start: 0,
            too_many: None,
        }
    }

    /// The byte at `i`, or 0 past the end (the C string's terminator).
    fn at(&self, i: usize) -> u8 {
        self.line.get(i).copied().unwrap_or(0)
    }

    fn emit(&mut self, b: u8) {
        if let Some(word) = self.words.last_mut() {
            word.push(b);
        }
        self.out_pos += 1;
    }

    /// Ends the current word and starts the next one.
    fn next_word(&mut self) {
        self.out_pos += 1;
        self.words.push(Vec::new());
        let index = self.words.len() - 1;
        if index == MAX_LINE_ARGS - 1 {
            self.last_start = self.out_pos;
        } else if index == MAX_LINE_ARGS && self.too_many.is_none() {
            let last = &self.words[MAX_LINE_ARGS - 1];
            let shown = last.split(|&b| b == 0).next().unwrap_or_default();
            self.too_many = Some(format!(
                "too many words, truncating after word {MAX_LINE_ARGS}, position {}: <{}>",
                self.last_start + 1,
                String::from_utf8_lossy(shown)
            ));
        }
    }

    fn split(mut self, start: usize) -> Result<Vec<Vec<u8>>, String> {
        let mut i = start;
        let mut squote = false;
        let mut dquote = false;
        // Where the quote still open started.
        let mut quote: Option<usize> = None;
        loop {
            let c = self.at(i);
            match c {
                0 | b'\n' | b'\r' => break,
                b'#' if !squote && !dquote => break,
                b'"' if !squote => {
                    dquote = !dquote;
                    quote = dquote.then_some(i);
                    i += 1;
                }
                b'\'' if !dquote => {
                    squote = !squote;
                    quote = squote.then_some(i);
                    i += 1;
                }
                b'\\' if !squote => i = self.escape(i, dquote)?,
                c if is_space(c) && !squote && !dquote => {
                    // A run of separators (CR included here) is one break.
                    while is_space(self.at(i)) {
                        i += 1;
                    }
                    self.next_word();
                }
                b'$' if dquote => i = self.variable(i)?,
                c => {
                    self.emit(c);
                    i += 1;
                }
            }
        }
        if let Some(q) = quote {
            return Err(format!("unmatched quote at position {}", q + 1));
        }
        if let Some(message) = self.too_many {
            let trailing_only = self.words[MAX_LINE_ARGS..].iter().all(|w| w.is_empty());
            let hint = if trailing_only {
                "; HAProxy 2.6 counts a space, comment or empty word after the 64th word as a 65th word"
            } else {
                ""
            };
            return Err(format!(
                "{message} (HAProxy allows at most {MAX_LINE_ARGS} words on a line{hint})"
            ));
        }
        Ok(self.words)
    }

    /// A backslash at `i` (outside single quotes): emits what it stands for
    /// and returns where parsing goes on.
    fn escape(&mut self, i: usize, dquote: bool) -> Result<usize, String> {
        let next = self.at(i + 1);
        let (byte, used) = match next {
            b' ' | b'\\' | b'#' | b'\'' | b'"' => (next, 2),
            b't' => (b'\t', 2),
            b'n' => (b'\n', 2),
            b'r' => (b'\r', 2),
            b'$' if dquote => (b'$', 2),
            b'x' => match (hex_value(self.at(i + 2)), hex_value(self.at(i + 3))) {
                (Some(hi), Some(lo)) => ((hi << 4) | lo, 4),
                _ => {
                    return Err(format!(
                        "truncated or invalid hexadecimal sequence at position {}",
                        i + 1
                    ));
                }
            },
            // Not an escape sequence: the backslash is kept.
            _ => (b'\\', 1),
        };
        self.emit(byte);
        Ok(i + used)
    }

    /// A `$` at `i` inside double quotes: expands the variable and returns
    /// where parsing goes on.
    fn variable(&mut self, dollar: usize) -> Result<usize, String> {
        let mut i = dollar + 1;
        let brace = (self.at(i) == b'{').then_some(i);
        if brace.is_some() {
            i += 1;
        }
        let first = self.at(i);
        if !(first.is_ascii_alphabetic() || first == b'_' || first == b'.') {
            return Err(format!(
                "forbidden first char in environment variable name at position {}",
                i + 1
            ));
        }
        let name_start = i;
        if first == b'.' {
            i += 1;
        }
        while self.at(i).is_ascii_alphanumeric() || self.at(i) == b'_' {
            i += 1;
        }
        let name = &self.line[name_start..i];
        let mut value: Option<Vec<u8>> = match name {
            b".LINE" => Some(self.number.to_string().into_bytes()),
            b".FILE" | b".SECTION" => {
                let what = if name == b".FILE" {
                    "the configuration file's name"
                } else {
                    "the current section's name"
                };
                return Err(format!(
                    "pseudo-variable {} at position {} is not supported by this reader (HAProxy puts {what} there)",
                    String::from_utf8_lossy(name),
                    name_start + 1
                ));
            }
            [b'.', ..] => {
                return Err(format!(
                    "forbidden first char in environment variable name at position {}",
                    name_start + 1
                ));
            }
            // The name is ASCII letters, digits and '_'.
            _ => (self.env)(std::str::from_utf8(name).unwrap_or_default()).map(|v| {
                // A C string ends at its first NUL.
                let v = v.into_bytes();
                v.split(|&b| b == 0).next().unwrap_or_default().to_vec()
            }),
        };
        let mut expand = false;
        if brace.is_some() && self.at(i) == b'[' {
            if self.at(i + 1) != b'*' || self.at(i + 2) != b']' {
                return Err(format!(
                    "truncated or invalid word expansion sequence at position {}",
                    i + 1
                ));
            }
            expand = true;
            i += 3;
        }
        if let Some(open) = brace {
            let unmatched = || {
                format!(
                    "unmatched brace in environment variable name at position {}",
                    open + 1
                )
            };
            if self.at(i) == b'-' {
                // The default runs raw up to the next '}'.
                let close = self.line[i..]
                    .iter()
                    .position(|&b| b == b'}')
                    .map(|k| i + k)
                    .ok_or_else(unmatched)?;
                if value.is_none() {
                    value = Some(self.line[i + 1..close].to_vec());
                }
                i = close;
            } else if self.at(i) != b'}' {
                return Err(unmatched());
            }
            i += 1;
        }
        let value = value.unwrap_or_default();
        let mut k = 0;
        while k < value.len() {
            if expand && is_space(value[k]) {
                self.next_word();
                k += 1;
                while k < value.len() && is_space(value[k]) {
                    k += 1;
                }
            } else {
                self.emit(value[k]);
                k += 1;
            }
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    //! Expected words and messages are what HAProxy 2.6.12 gave in the
    //! experiment named in each comment: `haproxy -c` on a file of `global`
    //! then `.notice <line under test>`, whose NOTICE shows word 2 and whose
    //! "Unexpected argument" alert shows word 3 (an empty word 3 silences
    //! it); word counts and positions from its "too many words" alert; a few
    //! confirmed as response headers (`http-response set-header X-T ...`).

    use super::*;
    use std::collections::HashMap;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn lex_env(text: &str, vars: &[(&str, &str)]) -> Result<Vec<Line>, LexError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        lex(text, &|k: &str| map.get(k).cloned())
    }

    /// The words of a one-line text (LF added).
    fn words_env(line: &str, vars: &[(&str, &str)]) -> Vec<String> {
        let lines = lex_env(&format!("{line}\n"), vars).expect("lexes");
        assert_eq!(lines.len(), 1, "{line:?} gave {lines:?}");
        lines
            .into_iter()
            .next()
            .map(|l| l.words)
            .unwrap_or_default()
    }

    fn words(line: &str) -> Vec<String> {
        words_env(line, &[])
    }

    fn skipped(line: &str, vars: &[(&str, &str)]) -> bool {
        lex_env(&format!("{line}\n"), vars)
            .expect("lexes")
            .is_empty()
    }

    fn error_env(text: &str, vars: &[(&str, &str)]) -> LexError {
        lex_env(text, vars).expect_err("an error")
    }

    fn error(text: &str) -> LexError {
        error_env(text, &[])
    }

    fn err(line: usize, message: &str) -> LexError {
        LexError {
            line,
            message: message.to_string(),
        }
    }

    fn w(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// 'w1 w2 ... wN'
    fn numbered(n: usize) -> String {
        (1..=n)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn separators_are_space_tab_vt_ff() {
        // E02_space_split, E03_tab_split, E04_vt_split, E05_ff_split,
        // E06_multi_sep: 'Unexpected argument 'b'' each time.
        assert_eq!(words(".notice a b"), w(&[".notice", "a", "b"]));
        assert_eq!(words(".notice a\tb"), w(&[".notice", "a", "b"]));
        assert_eq!(words(".notice a\x0bb"), w(&[".notice", "a", "b"]));
        assert_eq!(words(".notice a\x0cb"), w(&[".notice", "a", "b"]));
        assert_eq!(words(".notice a \t \t  b"), w(&[".notice", "a", "b"]));
        // E14_leading_ws: leading blanks are skipped.
        assert_eq!(words("  \t  .notice lead"), w(&[".notice", "lead"]));
        // E132_ctrl_chars: other control characters are word characters.
        assert_eq!(words(".notice a\x01\x1fb"), w(&[".notice", "a\x01\x1fb"]));
    }

    #[test]
    fn hash_starts_a_comment_even_inside_a_word() {
        // E07_hash_midword: 'a'. E08_hash_after_space: 'a'.
        assert_eq!(words(".notice a#b"), w(&[".notice", "a"]));
        assert_eq!(words(".notice a #b c"), w(&[".notice", "a"]));
        // E147_hash_after_quote: 'a'.
        assert_eq!(words(".notice \"a\"#b"), w(&[".notice", "a"]));
        // E61_quote_in_comment: a quote in a comment is no quote.
        assert_eq!(words(".notice x # \"unterminated"), w(&[".notice", "x"]));
    }

    #[test]
    fn escaped_or_quoted_hash_is_a_character() {
        // E09_esc_hash, E10_dq_hash, E11_sq_hash, E46_dq_esc_hash: 'a#b'.
        assert_eq!(words(".notice a\\#b"), w(&[".notice", "a#b"]));
        assert_eq!(words(".notice \"a#b\""), w(&[".notice", "a#b"]));
        assert_eq!(words(".notice 'a#b'"), w(&[".notice", "a#b"]));
        assert_eq!(words(".notice \"a\\#b\""), w(&[".notice", "a#b"]));
        // E62_hash_in_dq_args: 'Unexpected argument 'b # c''.
        assert_eq!(words(".notice x \"b # c\""), w(&[".notice", "x", "b # c"]));
    }

    #[test]
    fn blank_and_comment_lines_are_skipped_and_numbers_kept() {
        // E133_comment_only_lines: the notice is reported at line 6.
        let lines = lex("global\n# c1\n   # c2\n\t\n\n.notice ok\n", &no_env).unwrap();
        assert_eq!(
            lines,
            vec![
                Line {
                    number: 1,
                    words: w(&["global"])
                },
                Line {
                    number: 6,
                    words: w(&[".notice", "ok"])
                },
            ]
        );
        // E121f_empty_file: no error.
        assert_eq!(lex("", &no_env), Ok(vec![]));
    }

    #[test]
    fn crlf_and_carriage_returns() {
        // E12_crlf: 'abc' (no CR).
        let lines = lex("global\r\n  .notice abc\r\n\r\n", &no_env).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].number, 2);
        assert_eq!(lines[1].words, w(&[".notice", "abc"]));
        // E135_cr_only_line: a CR-only line is blank.
        assert!(skipped("\r", &[]));
        // E13_cr_midline: a CR ends the line: 'a'.
        assert_eq!(words(".notice a\rb c"), w(&[".notice", "a"]));
        // E141_cr_in_separator_run: 'Unexpected argument 'b''.
        assert_eq!(words(".notice a \rb"), w(&[".notice", "a", "b"]));
        // E141b_cr_after_sep_then_end: 'a'.
        assert_eq!(words(".notice a \r"), w(&[".notice", "a"]));
        // E140_leading_cr_skipped: 'x'.
        assert_eq!(words("\r.notice x"), w(&[".notice", "x"]));
        // E65_dq_crlf_inside: a CR ends the line even inside double quotes.
        assert_eq!(
            error(".notice \"a\rb\"\n"),
            err(1, "unmatched quote at position 9")
        );
        // E136_lone_cr_file: CR alone does not end a line; no LF at all.
        assert_eq!(
            error("global\r.notice x\r"),
            err(
                1,
                "Missing LF on last line, file might have been truncated at position 18"
            )
        );
    }

    #[test]
    fn backslash_escapes() {
        // E20_esc_space 'a b', E21_esc_bs 'a\b', E22_esc_squote "a'b",
        // E23_esc_dquote 'a"b', E24_esc_r, E25_esc_n, E26_esc_t,
        // E27_esc_hex 'AbJJ'.
        assert_eq!(words(".notice a\\ b"), w(&[".notice", "a b"]));
        assert_eq!(words(".notice a\\\\b"), w(&[".notice", "a\\b"]));
        assert_eq!(words(".notice a\\'b"), w(&[".notice", "a'b"]));
        assert_eq!(words(".notice a\\\"b"), w(&[".notice", "a\"b"]));
        assert_eq!(words(".notice a\\rb"), w(&[".notice", "a\rb"]));
        assert_eq!(words(".notice a\\nb"), w(&[".notice", "a\nb"]));
        assert_eq!(words(".notice a\\tb"), w(&[".notice", "a\tb"]));
        assert_eq!(
            words(".notice \\x41\\x62\\x4a\\x4A"),
            w(&[".notice", "AbJJ"])
        );
        // E40_esc_lf_hex: an LF inside a word.
        assert_eq!(words(".notice a\\x0ab"), w(&[".notice", "a\nb"]));
        // Header experiment: X-Esc a\ b\#c\\d\x41 gave 'a b#c\dA'.
        assert_eq!(
            words("set-header X-Esc a\\ b\\#c\\\\d\\x41"),
            w(&["set-header", "X-Esc", "a b#c\\dA"])
        );
    }

    #[test]
    fn unknown_escapes_keep_the_backslash() {
        // E30_esc_unknown_q 'a\qb', E31_esc_unknown_1 'a\1b',
        // E48_esc_upper_X '\X41'; header X-Unknown \q\1\$ gave '\q\1\$'.
        assert_eq!(words(".notice a\\qb"), w(&[".notice", "a\\qb"]));
        assert_eq!(words(".notice a\\1b"), w(&[".notice", "a\\1b"]));
        assert_eq!(words(".notice \\X41"), w(&[".notice", "\\X41"]));
        assert_eq!(words(".notice \\q\\1\\$"), w(&[".notice", "\\q\\1\\$"]));
    }

    #[test]
    fn backslash_dollar_escapes_only_inside_double_quotes() {
        // E32_esc_dollar_unquoted 'a\$b', E33_esc_dollar_dq 'a$b',
        // E34_esc_dollar_sq 'a\$b', E90_esc_dollar_env '$FOO'.
        assert_eq!(words(".notice a\\$b"), w(&[".notice", "a\\$b"]));
        assert_eq!(words(".notice \"a\\$b\""), w(&[".notice", "a$b"]));
        assert_eq!(words(".notice 'a\\$b'"), w(&[".notice", "a\\$b"]));
        assert_eq!(
            words_env(".notice \"\\$FOO\"", &[("FOO", "bar")]),
            w(&[".notice", "$FOO"])
        );
    }

    #[test]
    fn backslash_tab_is_not_an_escape() {
        // E35_esc_tab_unquoted: 'Unexpected argument 'b'' (word 1 is 'a\').
        assert_eq!(words(".notice a\\\tb"), w(&[".notice", "a\\", "b"]));
        // E36_esc_tab_dq: 'a\<TAB>b'; header X-Tab "a\<TAB>b" gave the same.
        assert_eq!(words(".notice \"a\\\tb\""), w(&[".notice", "a\\\tb"]));
    }

    #[test]
    fn trailing_backslash_is_literal_no_continuation() {
        // E37_trailing_bs: 'a\'.
        assert_eq!(words(".notice a\\"), w(&[".notice", "a\\"]));
        // E49d_trailing_bs_crlf: 'a\'.
        assert_eq!(words(".notice a\\\r"), w(&[".notice", "a\\"]));
        // E38_no_continuation: line 3 is "unknown keyword 'b'".
        let lines = lex("global\n.notice a\\\n    b\n", &no_env).unwrap();
        assert_eq!(lines[1].words, w(&[".notice", "a\\"]));
        assert_eq!(
            lines[2],
            Line {
                number: 3,
                words: w(&["b"])
            }
        );
        // E137_bs_before_nothing_in_dq: still an unmatched quote.
        assert_eq!(
            error(".notice \"a\\\n"),
            err(1, "unmatched quote at position 9")
        );
    }

    #[test]
    fn hex_escape_errors() {
        // E28_esc_hex_bad, E29_esc_hex_trunc, E29b_esc_hex_none: position 11.
        let msg = "truncated or invalid hexadecimal sequence at position 11";
        assert_eq!(error("global\n.notice ab\\x4gz\n"), err(2, msg));
        assert_eq!(error("global\n.notice ab\\x4\n"), err(2, msg));
        assert_eq!(error("global\n.notice ab\\x\n"), err(2, msg));
        assert_eq!(
            error("global\n.notice ab\\x4gz\n").to_string(),
            format!("line 2: {msg}")
        );
    }

    #[test]
    fn nul_from_hex_escape_cuts_the_word() {
        // E39_esc_nul: 'a'.
        assert_eq!(words(".notice a\\x00b"), w(&[".notice", "a"]));
        assert_eq!(words(".notice a\\x00b c"), w(&[".notice", "a", "c"]));
        // E39b_esc_nul_first: the line is skipped (no alert).
        assert!(skipped("    \\x00 .alert boom", &[]));
    }

    #[test]
    fn high_bytes_must_stay_utf8() {
        // E131_utf8 'été', E131b_nbsp: U+00A0 is no separator.
        assert_eq!(words(".notice été"), w(&[".notice", "été"]));
        assert_eq!(words(".notice a\u{a0}b"), w(&[".notice", "a\u{a0}b"]));
        assert_eq!(words(".notice \\xc3\\xa9"), w(&[".notice", "é"]));
        // E47_esc_high: HAProxy keeps the byte 0xff; we refuse it.
        assert_eq!(
            error(".notice a\\xffb\n"),
            err(
                1,
                "word 2 is not valid UTF-8 after its \\x escapes (HAProxy would take the raw bytes; this reader needs text)"
            )
        );
        // E134_bom: a BOM is part of the first word ("unknown keyword").
        assert_eq!(words("\u{feff}global"), w(&["\u{feff}global"]));
    }

    #[test]
    fn single_quotes_are_literal() {
        // E41_sq_bs 'a\\b', E49c_esc_n_sq 'a\nb' (backslash n),
        // E49e_esc_hex_sq '\x41', E73_env_sq '$FOO', E59b_sq_with_dq 'a"b'.
        assert_eq!(words(".notice 'a\\\\b'"), w(&[".notice", "a\\\\b"]));
        assert_eq!(words(".notice 'a\\nb'"), w(&[".notice", "a\\nb"]));
        assert_eq!(words(".notice '\\x41'"), w(&[".notice", "\\x41"]));
        assert_eq!(
            words_env(".notice '$FOO'", &[("FOO", "bar")]),
            w(&[".notice", "$FOO"])
        );
        assert_eq!(words(".notice 'a\"b'"), w(&[".notice", "a\"b"]));
        // E51_sq_space.
        assert_eq!(words(".notice 'a b'"), w(&[".notice", "a b"]));
        // E44_sq_esc_squote: no escape inside single quotes.
        assert_eq!(
            error(".notice 'a\\'b'\n"),
            err(1, "unmatched quote at position 14")
        );
    }

    #[test]
    fn double_quotes_keep_blanks_and_process_escapes() {
        // E50_dq_space 'a b', E145_tab_in_dq 'a<TAB>b', E59_dq_with_sq "a'b",
        // E42_dq_bs 'a\b', E43_dq_esc_squote "a'b", E45_dq_esc_dquote 'a"b',
        // E49_esc_space_dq 'a b', E49b_esc_n_dq, E152_bs_cr_in_dq.
        assert_eq!(words(".notice \"a b\""), w(&[".notice", "a b"]));
        assert_eq!(words(".notice \"a\tb\""), w(&[".notice", "a\tb"]));
        assert_eq!(words(".notice \"a'b\""), w(&[".notice", "a'b"]));
        assert_eq!(words(".notice \"a\\\\b\""), w(&[".notice", "a\\b"]));
        assert_eq!(words(".notice \"a\\'b\""), w(&[".notice", "a'b"]));
        assert_eq!(words(".notice \"a\\\"b\""), w(&[".notice", "a\"b"]));
        assert_eq!(words(".notice \"a\\ b\""), w(&[".notice", "a b"]));
        assert_eq!(words(".notice \"a\\nb\""), w(&[".notice", "a\nb"]));
        assert_eq!(words(".notice \"a\\rb\""), w(&[".notice", "a\rb"]));
    }

    #[test]
    fn quotes_join_parts_of_one_word() {
        // E52_join 'ab cd'; header X-Join a"b c"d gave 'ab cd'.
        assert_eq!(words(".notice a\"b c\"d"), w(&[".notice", "ab cd"]));
        // E52b_join_next: 'Unexpected argument 'e''.
        assert_eq!(words(".notice a\"b c\"d e"), w(&[".notice", "ab cd", "e"]));
        // E53_join3 'ab cde f'.
        assert_eq!(words(".notice a'b c'd\"e f\""), w(&[".notice", "ab cde f"]));
        // E94_dq_then_unquoted_env 'a$FOO', E153_dollar_in_sq_in_dq_join '$Xv'.
        let env = [("FOO", "bar"), ("X", "v")];
        assert_eq!(
            words_env(".notice \"a\"$FOO", &env),
            w(&[".notice", "a$FOO"])
        );
        assert_eq!(
            words_env(".notice '$X'\"$X\"", &env),
            w(&[".notice", "$Xv"])
        );
    }

    #[test]
    fn empty_quoted_string_is_an_empty_word() {
        // E54b_empty_mid, E54c_empty_sq_mid: 'x' and no complaint about 'y':
        // word 2 is empty.
        assert_eq!(words(".notice x \"\" y"), w(&[".notice", "x", "", "y"]));
        assert_eq!(words(".notice x '' y"), w(&[".notice", "x", "", "y"]));
        // E54_empty_dq_word: 'Unexpected argument 'x''.
        assert_eq!(words(".notice \"\" x"), w(&[".notice", "", "x"]));
        // E54d_empty_only, E63_empty_sq: '' (trailing empty words dropped).
        assert_eq!(words(".notice \"\""), w(&[".notice"]));
        assert_eq!(words(".notice ''"), w(&[".notice"]));
    }

    #[test]
    fn empty_first_word_skips_the_line() {
        // E55_empty_first_alert: no alert. E55b_empty_first_unknown,
        // E55c_sq_empty_first_unknown: no "unknown keyword" (E55d has one).
        assert!(skipped("\"\" .alert boom", &[]));
        assert!(skipped("\"\" foo bar", &[]));
        assert!(skipped("'' foo bar", &[]));
        assert!(!skipped("foo bar", &[]));
        // E95_undef_first_word: no alert.
        assert!(skipped("\"$NOPE\" .alert boom", &[]));
    }

    #[test]
    fn unterminated_quotes() {
        // E57_unterminated_dq, E58_unterminated_sq: position 9.
        assert_eq!(
            error("global\n.notice \"abc\n"),
            err(2, "unmatched quote at position 9")
        );
        assert_eq!(
            error("global\n.notice 'abc\n"),
            err(2, "unmatched quote at position 9")
        );
        // E60_unterminated_leading: leading blanks count: position 14.
        assert_eq!(
            error("global\n   .notice x \"abc\n"),
            err(2, "unmatched quote at position 14")
        );
        // E60b_unterminated_second: position 13.
        assert_eq!(
            error(".notice \"a\" \"b\n"),
            err(1, "unmatched quote at position 13")
        );
        // E64_unterminated_crlf: position 9.
        assert_eq!(
            error(".notice \"abc\r\n"),
            err(1, "unmatched quote at position 9")
        );
    }

    #[test]
    fn environment_variables_inside_double_quotes_only() {
        let env = [("FOO", "bar")];
        // E70_env, E71_env_brace: 'bar'. E72_env_unquoted '$FOO',
        // E72b_env_brace_unquoted '${FOO}'. Header X-Unq $FOO gave '$FOO'.
        assert_eq!(words_env(".notice \"$FOO\"", &env), w(&[".notice", "bar"]));
        assert_eq!(
            words_env(".notice \"${FOO}\"", &env),
            w(&[".notice", "bar"])
        );
        assert_eq!(words_env(".notice $FOO", &env), w(&[".notice", "$FOO"]));
        assert_eq!(words_env(".notice ${FOO}", &env), w(&[".notice", "${FOO}"]));
        // E91_twice 'barbarbar'.
        assert_eq!(
            words_env(".notice \"${FOO}${FOO}$FOO\"", &env),
            w(&[".notice", "barbarbar"])
        );
    }

    #[test]
    fn variable_names() {
        let env = [("FOO", "bar"), ("FOO_1", "one")];
        // E74_env_suffix 'barx', E74b_env_brace_suffix 'barx',
        // E74c_env_greedy '' ($FOOx), E74d_env_stop_dash 'bar-x.y',
        // E92_name_chars '.x' (FOO_1 unset there), E93_underscore '',
        // E98_lowercase '' (names are case-sensitive).
        assert_eq!(
            words_env(".notice \"$FOO\"x", &env),
            w(&[".notice", "barx"])
        );
        assert_eq!(
            words_env(".notice \"${FOO}x\"", &env),
            w(&[".notice", "barx"])
        );
        assert_eq!(
            words_env(".notice x \"$FOOx\" y", &env),
            w(&[".notice", "x", "", "y"])
        );
        assert_eq!(
            words_env(".notice \"$FOO-x.y\"", &env),
            w(&[".notice", "bar-x.y"])
        );
        assert_eq!(
            words_env(".notice \"$FOO_1.x\"", &env),
            w(&[".notice", "one.x"])
        );
        assert_eq!(
            words_env(".notice \"$FOO_1.x\"", &[]),
            w(&[".notice", ".x"])
        );
        assert_eq!(
            words_env(".notice \"<$_X>\"", &[("_X", "u")]),
            w(&[".notice", "<u>"])
        );
        assert_eq!(words_env(".notice \"<$foo>\"", &env), w(&[".notice", "<>"]));
    }

    #[test]
    fn undefined_variable_is_empty_without_error() {
        // E75_env_undef '<>'; E89_undef_mid: word 2 empty ('x', no complaint
        // about 'y', so HAProxy 2.6.12 lacks the later "skip the quote" fix).
        assert_eq!(words(".notice \"<$NOPE>\""), w(&[".notice", "<>"]));
        assert_eq!(
            words(".notice x \"$NOPE\" y"),
            w(&[".notice", "x", "", "y"])
        );
    }

    #[test]
    fn default_values() {
        let env = [("FOO", "bar"), ("EMPTY", ""), ("X", "v")];
        // E76_default_undef 'def', E76b_default_def 'bar',
        // E76c_default_empty '<>', E77_default_space 'a b' (one word),
        // E78_default_nothing '<>'.
        assert_eq!(
            words_env(".notice \"${NOPE-def}\"", &env),
            w(&[".notice", "def"])
        );
        assert_eq!(
            words_env(".notice \"${FOO-def}\"", &env),
            w(&[".notice", "bar"])
        );
        assert_eq!(
            words_env(".notice \"<${EMPTY-def}>\"", &env),
            w(&[".notice", "<>"])
        );
        assert_eq!(
            words_env(".notice \"${NOPE-a b}\"", &env),
            w(&[".notice", "a b"])
        );
        assert_eq!(
            words_env(".notice \"<${NOPE-}>\"", &env),
            w(&[".notice", "<>"])
        );
        // The default is raw: E87_default_raw_quote 'a"b',
        // E87b_default_hash_esc 'a#\x41 $FOO', E154_brace_default_has_dollar
        // '$X', E155_escaped_brace_default 'a\b}', E96_default_close_brace_twice
        // 'ab}', E151_cr_inside_default 'a<CR>b'.
        assert_eq!(
            words_env(".notice \"${NOPE-a\"b}\"", &env),
            w(&[".notice", "a\"b"])
        );
        assert_eq!(
            words_env(".notice \"${NOPE-a#\\x41 $FOO}\"", &env),
            w(&[".notice", "a#\\x41 $FOO"])
        );
        assert_eq!(
            words_env(".notice \"${U-$X}\"", &env),
            w(&[".notice", "$X"])
        );
        assert_eq!(
            words_env(".notice \"${U-a\\}b}\"", &env),
            w(&[".notice", "a\\b}"])
        );
        assert_eq!(
            words_env(".notice \"${NOPE-a}b}\"", &env),
            w(&[".notice", "ab}"])
        );
        assert_eq!(
            words_env(".notice \"${U-a\rb}\"", &env),
            w(&[".notice", "a\rb"])
        );
        // Header experiment: "${FOO}|$FOO|${NOPE-dflt}|<$NOPE>" gave
        // 'bar|bar|dflt|<>'.
        assert_eq!(
            words_env("x \"${FOO}|$FOO|${NOPE-dflt}|<$NOPE>\"", &env),
            w(&["x", "bar|bar|dflt|<>"])
        );
    }

    #[test]
    fn word_expansion() {
        let env = [("L", "a b  c"), ("LS", " a b "), ("T", "a\tb"), ("E", "")];
        // E79_expand: 'Unexpected argument 'b''. E79b_expand_prefix likewise.
        assert_eq!(
            words_env(".notice \"${L[*]}\"", &env),
            w(&[".notice", "a", "b", "c"])
        );
        assert_eq!(
            words_env(".notice \"p${L[*]}q\"", &env),
            w(&[".notice", "pa", "b", "cq"])
        );
        // E79c_expand_noexp: 'a b  c'. E84_expand_no_brace 'a b  c[*]'.
        assert_eq!(
            words_env(".notice \"${L}\"", &env),
            w(&[".notice", "a b  c"])
        );
        assert_eq!(
            words_env(".notice \"$L[*]\"", &env),
            w(&[".notice", "a b  c[*]"])
        );
        // E80_expand_leading_space: 'Unexpected argument 'a'': an empty word
        // first. E80b_expand_trailing_space: and an empty one after 'b'.
        assert_eq!(
            words_env(".notice \"${LS[*]}\" z", &env),
            w(&[".notice", "", "a", "b", "", "z"])
        );
        // E144_expand_tab_value: tabs split too.
        assert_eq!(
            words_env(".notice \"${T[*]}\"", &env),
            w(&[".notice", "a", "b"])
        );
        // E88_expand_default 'Unexpected argument 'y''; E88b '[*]' after the
        // dash is part of the default: 'x y[*]'.
        assert_eq!(
            words_env(".notice \"${NOPE[*]-x y}\"", &env),
            w(&[".notice", "x", "y"])
        );
        assert_eq!(
            words_env(".notice \"${NOPE-x y[*]}\"", &env),
            w(&[".notice", "x y[*]"])
        );
        // E148_empty_value_expand, E149_unset_expand_mid: one empty word.
        assert_eq!(
            words_env(".notice x \"${E[*]}\" y", &env),
            w(&[".notice", "x", "", "y"])
        );
        assert_eq!(
            words_env(".notice x \"${U[*]}\" y", &env),
            w(&[".notice", "x", "", "y"])
        );
        // E97_expand_first_word: "unknown keyword 'a'".
        assert_eq!(words_env("\"${L[*]}\"", &env), w(&["a", "b", "c"]));
    }

    #[test]
    fn values_are_inserted_raw() {
        // E86_value_raw: 'x"y\z#w $FOO 'q''.
        let env = [("WEIRD", "x\"y\\z#w $FOO 'q'"), ("FOO", "bar")];
        assert_eq!(
            words_env(".notice \"$WEIRD\"", &env),
            w(&[".notice", "x\"y\\z#w $FOO 'q'"])
        );
        // A C string ends at NUL (getenv() cannot return more).
        assert_eq!(
            words_env(".notice \"$N\"", &[("N", "a\0b")]),
            w(&[".notice", "a"])
        );
    }

    #[test]
    fn variable_errors() {
        let env = [("FOO", "bar"), ("L", "a b")];
        let first =
            |p: usize| format!("forbidden first char in environment variable name at position {p}");
        // E81_dollar_end_dq (12), E81b_dollar_digit (11),
        // E81c_brace_nonalpha (12), E81d_dollar_space (12).
        assert_eq!(error_env(".notice \"a$\"\n", &env), err(1, &first(12)));
        assert_eq!(error_env(".notice \"$1\"\n", &env), err(1, &first(11)));
        assert_eq!(error_env(".notice \"${1}\"\n", &env), err(1, &first(12)));
        assert_eq!(error_env(".notice \"a$ b\"\n", &env), err(1, &first(12)));
        // E85e_badpseudo, E85f_dot_alone: position 11.
        assert_eq!(error_env(".notice \"$.FOO\"\n", &env), err(1, &first(11)));
        assert_eq!(error_env(".notice \"$.\"\n", &env), err(1, &first(11)));
        // E82_unmatched_brace, E82b_unmatched_brace_default: position 11.
        let brace = "unmatched brace in environment variable name at position 11";
        assert_eq!(error_env(".notice \"${FOO\"\n", &env), err(1, brace));
        assert_eq!(error_env(".notice \"${FOO-abc\"\n", &env), err(1, brace));
        // E83_bad_expand, E83b_bad_expand2: position 13.
        let expand = "truncated or invalid word expansion sequence at position 13";
        assert_eq!(error_env(".notice \"${L[x]}\"\n", &env), err(1, expand));
        assert_eq!(error_env(".notice \"${L[*}\"\n", &env), err(1, expand));
    }

    #[test]
    fn pseudo_variables() {
        // E85_line '2', E85b_line_brace '<2>'; header X-Line gave its line.
        let lines = lex("global\n.notice \"$.LINE\" \"<${.LINE}>\"\n", &no_env).unwrap();
        assert_eq!(lines[1].words, w(&[".notice", "2", "<2>"]));
        // E85c_file, E85d_section: HAProxy knows these; this reader does not.
        assert_eq!(
            error("global\n.notice \"$.FILE\"\n"),
            err(
                2,
                "pseudo-variable .FILE at position 11 is not supported by this reader (HAProxy puts the configuration file's name there)"
            )
        );
        assert_eq!(
            error("global\n.notice \"<${.SECTION}>\"\n"),
            err(
                2,
                "pseudo-variable .SECTION at position 13 is not supported by this reader (HAProxy puts the current section's name there)"
            )
        );
    }

    #[test]
    fn at_most_64_words() {
        // E100_64_words_skipped: '"" w1..w63' (64 words) is fine;
        // E100c_64_words_unknown_kw: 64 words reach the keyword parser.
        assert_eq!(words(&numbered(64)).len(), 64);
        assert!(skipped(&format!("\"\" {}", numbered(63)), &[]));
        // E100d_65_words_unknown_kw.
        let msg = "too many words, truncating after word 64, position 244: <w64> (HAProxy allows at most 64 words on a line)";
        assert_eq!(error(&format!("global\n{}\n", numbered(65))), err(2, msg));
        // E103_65_words_quoted, E103b_65_empty: same message.
        assert_eq!(
            error(&format!("{} \"sixty five\"\n", numbered(64))),
            err(1, msg)
        );
        // E100b_65_words: '"" w1..w64': position 241, <w63>; the empty first
        // word does not spare the check.
        assert_eq!(
            error(&format!("\"\" {}\n", numbered(64))).message,
            "too many words, truncating after word 64, position 241: <w63> (HAProxy allows at most 64 words on a line)"
        );
        // E106_position_escapes: the position counts unescaped bytes: 243.
        assert!(
            error(&format!("\"a\\x41\" {}\n", numbered(64)))
                .message
                .starts_with("too many words, truncating after word 64, position 243: <w63>")
        );
    }

    #[test]
    fn trailing_blank_after_64_words_counts_as_a_word() {
        // E101_64_words_trailing_space, E101b_64_words_trailing_tab,
        // E102_64_words_comment, E143_64_words_trailing_space_crlf: error.
        let msg = "too many words, truncating after word 64, position 244: <w64> (HAProxy allows at most 64 words on a line; HAProxy 2.6 counts a space, comment or empty word after the 64th word as a 65th word)";
        for tail in [" ", "\t", " # comment", " \r", " \"\""] {
            assert_eq!(
                error(&format!("{}{tail}\n", numbered(64))),
                err(1, msg),
                "tail {tail:?}"
            );
        }
        // E102b_64_words_hash_glued, E102c_64_words_crlf,
        // E102d_63_words_trailing_space: fine.
        assert_eq!(words(&format!("{}#comment", numbered(64))).len(), 64);
        assert_eq!(words(&format!("{}\r", numbered(64))).len(), 64);
        assert_eq!(words(&format!("{} ", numbered(63))).len(), 63);
    }

    #[test]
    fn word_expansion_counts_towards_64() {
        let env = [("L3", "x y z")];
        // E104_expand_over: position 242, <y>. E104b_expand_exact: fine.
        assert_eq!(
            error_env(&format!("{} \"${{L3[*]}}\"\n", numbered(62)), &env).message,
            "too many words, truncating after word 64, position 242: <y> (HAProxy allows at most 64 words on a line)"
        );
        assert_eq!(
            words_env(&format!("{} \"${{L3[*]}}\"", numbered(61)), &env).len(),
            64
        );
    }

    #[test]
    fn later_errors_take_precedence_over_too_many_words() {
        // E105_toomany_then_quote: unmatched quote at 252.
        assert_eq!(
            error(&format!("{} \"unterminated\n", numbered(65))),
            err(1, "unmatched quote at position 252")
        );
        // E105b_toomany_then_hex: position 252.
        assert_eq!(
            error(&format!("{} \\xZZ\n", numbered(65))),
            err(
                1,
                "truncated or invalid hexadecimal sequence at position 252"
            )
        );
    }

    #[test]
    fn no_line_length_limit() {
        // E107_long_line_100k, E107b_long_line_1m_quoted,
        // E108_leading_space_line_100k: all accepted.
        let long = "a".repeat(100_000);
        assert_eq!(words(&format!(".notice {long}")), w(&[".notice", &long]));
        let quoted = "b c".repeat(400_000);
        assert_eq!(
            words(&format!(".notice \"{quoted}\"")),
            w(&[".notice", &quoted])
        );
        assert_eq!(
            words(&format!("{}.notice x", " ".repeat(100_000))),
            w(&[".notice", "x"])
        );
    }

    #[test]
    fn nul_characters() {
        // E120_stray_nul_midfile: the line is read up to the NUL, then
        // "Stray NUL character at position 10" on line 2.
        assert_eq!(
            error("global\n.notice a\0b c\n.notice after\n"),
            err(2, "Stray NUL character at position 10")
        );
        // E120b_stray_nul_first_line_leading_ws: position 13.
        assert_eq!(
            error("global\n   .notice x\0\n.notice after\n"),
            err(2, "Stray NUL character at position 13")
        );
        // E120c_nul_quote_before: the quote error comes first.
        assert_eq!(
            error("global\n.notice \"a\0b\n.notice after\n"),
            err(2, "unmatched quote at position 9")
        );
        // E121d_nul_last_line_with_lf: on the last line it is "Missing LF".
        assert_eq!(
            error("global\n.notice a\0b\n"),
            err(
                2,
                "Missing LF on last line, file might have been truncated at position 10"
            )
        );
    }

    #[test]
    fn last_line_needs_a_line_feed() {
        let missing = |p: usize| {
            format!("Missing LF on last line, file might have been truncated at position {p}")
        };
        // E121_missing_lf (13), E121b_missing_lf_comment (17),
        // E121c_missing_lf_blank (4), E121e_missing_lf_crlf_file (line 3, 10).
        assert_eq!(error("global\n.notice last"), err(2, &missing(13)));
        assert_eq!(error("global\n# just a comment"), err(2, &missing(17)));
        assert_eq!(error("global\n   "), err(2, &missing(4)));
        assert_eq!(
            error("global\r\n.notice last\r\n.notice x"),
            err(3, &missing(10))
        );
        // E121g_missing_lf_error_too: the line's own error comes first.
        assert_eq!(
            error("global\n.notice \"abc"),
            err(2, "unmatched quote at position 9")
        );
    }

    #[test]
    fn scope_lines() {
        // E130_scope, E130f_scope_leading_ws_comment, E130i_scope_crlf:
        // accepted, nothing parsed.
        let lines = lex(
            "global\n[foo]\n   [foo-1.2:x_y]   # c\n[foo]\r\n.notice after\n",
            &no_env,
        )
        .unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].number, 5);
        // E130b_scope_empty, E130c_scope_unclosed.
        assert_eq!(error("[]\n"), err(1, "empty scope name is forbidden"));
        assert_eq!(error("[foo\n"), err(1, "empty scope name is forbidden"));
        // E130d_scope_badchar, E130h_scope_env, E130k_scope_hash_inside.
        assert_eq!(
            error("[a b]\n"),
            err(1, "character ' ' is not permitted in a scope name")
        );
        assert_eq!(
            error("[\"$FOO\"]\n"),
            err(1, "character '\"' is not permitted in a scope name")
        );
        assert_eq!(
            error("[a#b]\n"),
            err(1, "character '#' is not permitted in a scope name")
        );
        // E130e_scope_trailing, E130j_scope_nested_bracket.
        assert_eq!(
            error("[foo] x\n"),
            err(1, "character 'x' is not permitted after scope declaration")
        );
        assert_eq!(
            error("[a]b]\n"),
            err(1, "character 'b' is not permitted after scope declaration")
        );
        // E130g_scope_quoted: a quoted bracket is an ordinary word.
        assert_eq!(words("\"[foo]\""), w(&["[foo]"]));
    }

    #[test]
    fn realistic_backend() {
        // The HAProxy guide's cookie example in a CRLF file; E160_realistic:
        // `haproxy -c` accepts this file as is.
        let text = "\
# HAProxy guide example\r
global\r
    daemon\r
    maxconn 256\r
\r
defaults\r
    mode http\r
    timeout connect 5000ms    # connect\r
    timeout client 50s\r
    timeout server 50s\r
    log-format \"%{+Q}o %t\"' %s'\\ %{-Q}r\r
\r
backend servers\r
    balance roundrobin\r
    cookie SERVER insert indirect nocache\r
    server web1 192.168.0.10:80 check cookie web1\r
    server web2 192.168.0.11:80 check cookie web2\r
    http-request set-header X-Forwarded-Host \"%[req.hdr(host)]\"\r
";
        let lines = lex(text, &no_env).unwrap();
        let got: Vec<(usize, Vec<String>)> =
            lines.into_iter().map(|l| (l.number, l.words)).collect();
        assert_eq!(
            got,
            vec![
                (2, w(&["global"])),
                (3, w(&["daemon"])),
                (4, w(&["maxconn", "256"])),
                (6, w(&["defaults"])),
                (7, w(&["mode", "http"])),
                (8, w(&["timeout", "connect", "5000ms"])),
                (9, w(&["timeout", "client", "50s"])),
                (10, w(&["timeout", "server", "50s"])),
                // configuration.txt 2.2: the log-format forms are equivalent.
                (11, w(&["log-format", "%{+Q}o %t %s %{-Q}r"])),
                (13, w(&["backend", "servers"])),
                (14, w(&["balance", "roundrobin"])),
                (
                    15,
                    w(&["cookie", "SERVER", "insert", "indirect", "nocache"])
                ),
                (
                    16,
                    w(&[
                        "server",
                        "web1",
                        "192.168.0.10:80",
                        "check",
                        "cookie",
                        "web1"
                    ])
                ),
                (
                    17,
                    w(&[
                        "server",
                        "web2",
                        "192.168.0.11:80",
                        "check",
                        "cookie",
                        "web2"
                    ])
                ),
                (
                    18,
                    w(&[
                        "http-request",
                        "set-header",
                        "X-Forwarded-Host",
                        "%[req.hdr(host)]"
                    ])
                ),
            ]
        );
    }

    /// Every string of up to 4 characters over an alphabet of the special
    /// characters, alone and as a line among others: no panic, and the
    /// output keeps its promises.
    #[test]
    fn no_panic_on_any_short_input() {
        let alphabet = [
            "\"", "'", "\\", "#", " ", "$", "x", "{", "}", "[", "*", "]", "-", ".", "\n", "\r",
            "\0", "\t", "é",
        ];
        let env = |k: &str| match k {
            "x" => Some("a b".to_string()),
            _ => None,
        };
        let check = |s: &str| {
            for text in [s.to_string(), format!("a {s}\nb\n")] {
                if let Ok(lines) = lex(&text, &env) {
                    let mut previous = 0;
                    for line in lines {
                        assert!(line.number > previous, "{text:?}");
                        previous = line.number;
                        assert!(!line.words.is_empty(), "{text:?}");
                        assert!(!line.words[0].is_empty(), "{text:?}");
                        assert!(line.words.len() <= MAX_LINE_ARGS, "{text:?}");
                        assert!(line.words.iter().all(|w| !w.contains('\0')), "{text:?}");
                        assert!(line.words.last().is_some_and(|w| !w.is_empty()));
                    }
                }
            }
        };
        let mut count = 0;
        let mut current = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for prefix in &current {
                for c in alphabet {
                    let s = format!("{prefix}{c}");
                    check(&s);
                    count += 1;
                    next.push(s);
                }
            }
            current = next;
        }
        assert_eq!(count, 19 + 19 * 19 + 19 * 19 * 19 + 19 * 19 * 19 * 19);
    }

    /// Longer pseudo-random inputs (a fixed LCG, so runs repeat).
    #[test]
    fn no_panic_on_random_input() {
        let alphabet: Vec<char> = "\"'\\# $x{}[*]-.\n\r\0\tabLINE_1é\u{a0}0fF"
            .chars()
            .collect();
        let env = |k: &str| match k {
            "x" | "LINE" => Some(" a  b ".to_string()),
            _ => None,
        };
        let mut seed: u64 = 0x5eed;
        for _ in 0..20_000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (seed >> 33) as usize % 80;
            let s: String = (0..len)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    alphabet[(seed >> 33) as usize % alphabet.len()]
                })
                .collect();
            let _ = lex(&s, &env);
            let _ = lex(&format!("{s}\n"), &env);
        }
    }
}
