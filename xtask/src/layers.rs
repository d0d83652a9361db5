//! `cargo xtask layers`: the daemon's modules import one way, downwards.
//!
//! Reads every file of `balancer-userspace/src`, finds each path that names
//! a module of the crate (`crate::x`, `use crate::{x, y::z}`; in `main.rs`,
//! the binary, `balancer::x`), and checks the module graph against
//! [`LAYERS`]: a module may import only modules of lower layers, never one
//! of its own layer or above. So there is no import circle, and the list
//! below is the whole architecture in one place. A module the list does not
//! name is an error too: a new module is placed on purpose. Comments,
//! strings and character literals are skipped, so doc links do not count.
//! It also holds every file to [`MAX_FILE_LINES`] lines of non-test code
//! (what comes before a file's `#[cfg(test)]`; `tests.rs` and
//! `test_util.rs` files are test code). `cargo xtask test` runs both
//! through its unit tests.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use anyhow::{Context as _, bail};

/// Top to bottom. `main` is the `balancer` binary (the CLI).
pub const LAYERS: &[(&str, &[&str])] = &[
    ("the CLI", &["main"]),
    ("the CLI's commands, flags and help", &["cli"]),
    ("the CLI's tables", &["print"]),
    ("the CLI's settings for a haproxy.cfg", &["cfg_args"]),
    (
        "the fuzz targets' bodies (tests and cargo fuzz only)",
        &["fuzz"],
    ),
    (
        "startup wiring; the packet generator",
        &["daemon", "trafficgen"],
    ),
    (
        "services around the controller",
        &["admin", "metrics", "peers"],
    ),
    ("the controller", &["control"]),
    (
        "what the controller drives",
        &["dataplane", "health", "discovery", "http", "netlink"],
    ),
    ("kernel helpers", &["stick_batch", "stats", "testrun"]),
    ("the configuration", &["config"]),
    ("shared vocabulary", &["api", "util"]),
];

/// Most lines of non-test code in one file of the daemon.
pub const MAX_FILE_LINES: usize = 800;

/// Files of `src` with more than [`MAX_FILE_LINES`] lines of non-test
/// code, as lines to print.
pub fn oversized(src: &Path) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for file in rust_files(src)? {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "tests.rs" || name == "test_util.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
        let n = code_lines(&text);
        if n > MAX_FILE_LINES {
            let rel = file.strip_prefix(src).unwrap_or(&file);
            out.push(format!(
                "{} has {n} lines of non-test code (at most {MAX_FILE_LINES}): split it by concern",
                rel.display()
            ));
        }
    }
    Ok(out)
}

/// Lines before the first `#[cfg(test)]` at the start of a line.
fn code_lines(text: &str) -> usize {
    text.lines()
        .take_while(|l| !l.starts_with("#[cfg(test)]"))
        .count()
}

/// Module -> the crate's modules it names (itself excluded), per file of
/// `src` (a crate root: `lib.rs` declares the modules, `main.rs` is the
/// binary using the library as `balancer`).
pub fn graph(src: &Path) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(src)? {
        let rel = file.strip_prefix(src).expect("under src");
        let first = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .context("file name")?;
        let module = first.strip_suffix(".rs").unwrap_or(first).to_owned();
        if module == "lib" || module == "bin" {
            continue;
        }
        let text = std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
        let root = if module == "main" {
            "balancer"
        } else {
            "crate"
        };
        let used = imports(&text, root);
        let e = g.entry(module.clone()).or_default();
        e.extend(used.into_iter().filter(|m| *m != module));
    }
    Ok(g)
}

/// Inside each folder module (`http/`, `peers/`, ...): the circles among
/// its submodules (`http::proxy` -> `http::upstream` -> `http::proxy`),
/// read from `crate::a::x` and `super::x` paths, as lines to print. The
/// folder's own `mod.rs` is not a node (it declares and re-exports its
/// submodules).
pub fn sibling_circles(src: &Path) -> anyhow::Result<Vec<String>> {
    // folder -> submodule -> the submodules it names
    let mut g: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut texts = Vec::new();
    for file in rust_files(src)? {
        let rel = file.strip_prefix(src).expect("under src").to_path_buf();
        let parts: Vec<String> = rel
            .iter()
            .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_owned())
            .collect();
        if parts.len() < 2 || parts[1] == "mod" {
            continue;
        }
        g.entry(parts[0].clone())
            .or_default()
            .entry(parts[1].clone())
            .or_default();
        texts.push((parts, std::fs::read_to_string(&file)?));
    }
    for (parts, text) in &texts {
        let (folder, me) = (&parts[0], &parts[1]);
        // The file's module path: a/b.rs and a/b/mod.rs are a::b.
        let mut path: Vec<&str> = parts.iter().map(String::as_str).collect();
        if path.last() == Some(&"mod") {
            path.pop();
        }
        let siblings = g[folder].keys().cloned().collect::<BTreeSet<_>>();
        let mut named = BTreeSet::new();
        let toks = tokens(text);
        for i in 0..toks.len() {
            let preceded_by_path = i > 0 && toks[i - 1] == "::";
            if preceded_by_path {
                continue;
            }
            // crate::folder::x
            if toks[i] == "crate"
                && toks.get(i + 1).map(String::as_str) == Some("::")
                && toks.get(i + 2) == Some(folder)
                && toks.get(i + 3).map(String::as_str) == Some("::")
            {
                first_segments(&toks, i + 4, &mut named);
            }
            // super::x, super::super::x
            if toks[i] == "super" {
                let mut base = path.len();
                let mut j = i;
                while toks.get(j).map(String::as_str) == Some("super")
                    && toks.get(j + 1).map(String::as_str) == Some("::")
                {
                    base = base.saturating_sub(1);
                    j += 2;
                }
                // `super` from a submodule's file reaches the folder when
                // the remaining path starts at depth 1.
                if base == 1 {
                    first_segments(&toks, j, &mut named);
                }
            }
        }
        let deps = g
            .get_mut(folder)
            .expect("folder")
            .get_mut(me)
            .expect("module");
        deps.extend(
            named
                .into_iter()
                .filter(|n| n != me && siblings.contains(n)),
        );
    }
    let mut out = Vec::new();
    for (folder, sub) in &g {
        for circle in circles(sub) {
            out.push(format!(
                "import circle inside {folder}/: {}",
                circle.join(" -> ")
            ));
        }
    }
    Ok(out)
}

/// One circle through each strongly connected group of `g` (depth-first).
fn circles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn reach(
        g: &BTreeMap<String, BTreeSet<String>>,
        from: &str,
        to: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for d in g.get(from).into_iter().flatten() {
            if d == to {
                path.push(d.clone());
                return true;
            }
            if seen.insert(d.clone()) {
                path.push(d.clone());
                if reach(g, d, to, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut covered = BTreeSet::new();
    for m in g.keys() {
        if covered.contains(m) {
            continue;
        }
        let mut path = vec![m.clone()];
        if reach(g, m, m, &mut path, &mut BTreeSet::new()) {
            covered.extend(path.iter().cloned());
            out.push(path);
        }
    }
    out
}

/// Every import against [`LAYERS`]: the violations, as lines to print.
pub fn check(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let rank: BTreeMap<&str, usize> = LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, (_, ms))| ms.iter().map(move |m| (*m, i)))
        .collect();
    let mut problems = Vec::new();
    for (m, deps) in g {
        let Some(&r) = rank.get(m.as_str()) else {
            problems.push(format!(
                "module {m} is in no layer: add it to xtask/src/layers.rs LAYERS"
            ));
            continue;
        };
        for d in deps {
            match rank.get(d.as_str()) {
                // Not a module of the crate: an item of lib.rs (`OBJECT`).
                None => {}
                Some(&rd) if rd > r => {}
                Some(&rd) => problems.push(format!(
                    "{m} ({}) imports {d} ({}): imports must point to a lower layer",
                    LAYERS[r].0, LAYERS[rd].0
                )),
            }
        }
    }
    problems
}

/// `cargo xtask layers`: print the graph by layer; fail on a violation.
pub fn run(src: Option<&Path>) -> anyhow::Result<()> {
    let src = match src {
        Some(s) => s.to_owned(),
        None => crate::util::root().join("balancer-userspace/src"),
    };
    let g = graph(&src)?;
    for (name, modules) in LAYERS {
        println!("{name}:");
        for m in modules.iter().filter(|m| g.contains_key(**m)) {
            let deps: Vec<&str> = g[*m].iter().map(String::as_str).collect();
            println!("  {m} -> {}", deps.join(", "));
        }
    }
    let mut problems = check(&g);
    problems.extend(sibling_circles(&src)?);
    problems.extend(oversized(&src)?);
    for p in &problems {
        println!("layers: {p}");
    }
    if !problems.is_empty() {
        bail!("{} problem(s) with the daemon's layout", problems.len());
    }
    println!(
        "layers: {} modules, no import points up or sideways; no file over {MAX_FILE_LINES} \
         lines of non-test code",
        g.len()
    );
    Ok(())
}

fn rust_files(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            out.extend(rust_files(&p)?);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// The first segment of every path that starts at `root` (`crate` or the
/// library's name), with `{...}` groups opened.
pub fn imports(text: &str, root: &str) -> BTreeSet<String> {
    let toks = tokens(text);
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < toks.len() {
        // `balancer_common::` is one identifier token, never `balancer`.
        let preceded_by_path = i > 0 && toks[i - 1] == "::";
        if toks[i] == root && !preceded_by_path && toks.get(i + 1).map(String::as_str) == Some("::")
        {
            i = first_segments(&toks, i + 2, &mut out);
        } else {
            i += 1;
        }
    }
    out
}

/// At `i` (just after `root::`): an identifier, or a `{...}` group whose
/// items each contribute their first segment. Returns where it ended.
fn first_segments(toks: &[String], i: usize, out: &mut BTreeSet<String>) -> usize {
    match toks.get(i).map(String::as_str) {
        Some("{") => {
            let mut depth = 0usize;
            let mut j = i;
            let mut item_start = true;
            while j < toks.len() {
                match toks[j].as_str() {
                    "{" => {
                        depth += 1;
                        item_start = depth == 1;
                    }
                    "}" => {
                        depth -= 1;
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                    "," if depth == 1 => item_start = true,
                    t if item_start && depth == 1 => {
                        if is_ident(t) && t != "self" {
                            out.insert(t.to_owned());
                        }
                        item_start = false;
                    }
                    _ => {}
                }
                j += 1;
            }
            j
        }
        Some(t) if is_ident(t) => {
            out.insert(t.to_owned());
            i + 1
        }
        _ => i,
    }
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Identifiers, `::` and single punctuation; comments, strings and
/// character literals dropped.
fn tokens(text: &str) -> Vec<String> {
    let b: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('#') || next == Some('"'))
            && raw_string(&b, i).is_some()
        {
            i = raw_string(&b, i).expect("checked");
        } else if c == 'b' && next == Some('"') {
            i = string_end(&b, i + 1);
        } else if c == '"' {
            i = string_end(&b, i);
        } else if c == '\'' {
            // A character literal ('x', '\n', '\''), else a lifetime.
            if b.get(i + 1) == Some(&'\\') {
                i += 2;
                while i < b.len() && b[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if b.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if c.is_alphanumeric() || c == '_' {
            let s = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.push(b[s..i].iter().collect());
        } else if c == ':' && next == Some(':') {
            out.push("::".into());
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
            i += 1;
        }
    }
    out
}

/// `r"..."` / `r#"..."#` starting at `i`: the index after it.
fn raw_string(b: &[char], i: usize) -> Option<usize> {
    let mut j = i + 1;
    let mut hashes = 0;
    while b.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    if b.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < b.len() {
        if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(j)
}

/// A `"..."` string starting at `i` (the quote): the index after it.
fn string_end(b: &[char], i: usize) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            '\\' => j += 2,
            '"' => return j + 1,
            _ => j += 1,
        }
    }
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn finds_paths_groups_and_nested_groups() {
        let text = r##"
            use crate::{
                config::{Config, Mode},
                control::Controller, self,
            };
            use crate::http::proxy;
            fn f() { crate::util::error_chain(&e); }
            // crate::admin in a comment
            /* crate::peers /* nested */ crate::metrics */
            const S: &str = "crate::daemon";
            const R: &str = r#"crate::daemon"#;
            let c = '"'; let l: &'static str = x; crate::netlink::x();
            use balancer_common::maps; let m = balancer::x;
        "##;
        assert_eq!(
            imports(text, "crate"),
            set(&["config", "control", "http", "netlink", "util"])
        );
        assert_eq!(imports(text, "balancer"), set(&["x"]));
    }

    #[test]
    fn an_import_sideways_or_up_is_reported() {
        let mut g = BTreeMap::new();
        g.insert("control".to_owned(), set(&["config", "daemon"]));
        g.insert("http".to_owned(), set(&["netlink"]));
        g.insert("daemon".to_owned(), set(&["control"]));
        g.insert("netlink".to_owned(), set(&[]));
        g.insert("newthing".to_owned(), set(&[]));
        g.insert("config".to_owned(), set(&[]));
        let p = check(&g);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].starts_with("control (the controller) imports daemon"));
        assert!(p[1].starts_with("http (what the controller drives) imports netlink"));
        assert!(p[2].starts_with("module newthing is in no layer"));
    }

    /// The real tree obeys the layering (what `cargo xtask layers` checks).
    #[test]
    fn the_daemon_obeys_its_layers() {
        let g = graph(&crate::util::root().join("balancer-userspace/src")).unwrap();
        assert!(g.contains_key("control") && g.contains_key("main"));
        let problems = check(&g);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn test_code_does_not_count_towards_a_files_size() {
        assert_eq!(code_lines("a\nb\n#[cfg(test)]\nmod tests {\n}\n"), 2);
        assert_eq!(code_lines("a\n    #[cfg(test)]\nb\n"), 3);
    }

    #[test]
    fn circles_are_found() {
        let mut g = BTreeMap::new();
        g.insert("proxy".to_owned(), set(&["upstream", "cookie"]));
        g.insert("upstream".to_owned(), set(&["proxy"]));
        g.insert("cookie".to_owned(), set(&[]));
        assert_eq!(circles(&g), vec![vec!["proxy", "upstream", "proxy"]]);
        g.insert("upstream".to_owned(), set(&["cookie"]));
        assert!(circles(&g).is_empty());
    }

    /// No circle among the submodules of any folder of the daemon.
    #[test]
    fn no_circle_inside_a_folder() {
        let c = sibling_circles(&crate::util::root().join("balancer-userspace/src")).unwrap();
        assert!(c.is_empty(), "{}", c.join("\n"));
    }

    /// No file of the daemon is over the size limit.
    #[test]
    fn no_daemon_file_is_oversized() {
        let big = oversized(&crate::util::root().join("balancer-userspace/src")).unwrap();
        assert!(big.is_empty(), "{}", big.join("\n"));
    }
}
