//! PLACEHOLDER until the tokenizer lands: words split by blanks, `#`
//! comments. Replaced by the real HAProxy 2.6 tokenizer.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub number: usize,
    pub words: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LexError {
    pub line: usize,
    pub message: String,
}

pub fn lex(text: &str, _env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Line>, LexError> {
    Ok(text
        .lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let l = l.split('#').next().unwrap_or("");
            let words: Vec<String> = l.split_whitespace().map(str::to_owned).collect();
            (!words.is_empty()).then_some(Line {
                number: i + 1,
                words,
            })
        })
        .collect())
}
