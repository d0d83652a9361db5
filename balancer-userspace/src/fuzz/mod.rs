//! The fuzz targets' bodies, one function per target taking the raw input.
//! The cargo-fuzz crate (`balancer-userspace/fuzz/`, run by `cargo xtask
//! fuzz`) calls them from its binaries; the unit test below runs every
//! committed seed and crash-regression file through them on the stable
//! toolchain, which is the part of fuzzing `cargo xtask test` runs.
//! Compiled for tests and for `cargo fuzz` (`--cfg fuzzing`) only.
//!
//! Each body asserts properties of what it fuzzes, not only the absence of
//! a panic; its doc says which, and how it reads its input (most split it
//! into `\n`-separated lines: a configuration, then the messages).

mod admin;
mod config;
mod cookie;
mod packet;
mod peers;
mod proxy_header;
mod upstream;

pub use admin::admin_request;
pub use config::{config_toml, config_values};
pub use cookie::{cookie_request, cookie_response};
pub use packet::packet_model;
pub use peers::peers_frame;
pub use proxy_header::proxy_header;
pub use upstream::{upstream_chunked, upstream_head};

/// A target's body: one input, which it panics on if a property fails.
pub type Body = fn(&[u8]);

/// Every target: its name (of its cargo-fuzz binary and of its corpus
/// folder) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("admin_request", admin_request),
    ("config_toml", config_toml),
    ("config_values", config_values),
    ("cookie_request", cookie_request),
    ("cookie_response", cookie_response),
    ("packet_model", packet_model),
    ("peers_frame", peers_frame),
    ("proxy_header", proxy_header),
    ("upstream_chunked", upstream_chunked),
    ("upstream_head", upstream_head),
];

fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n')
}

/// A line as text; "" when absent or not UTF-8.
fn text(line: Option<&[u8]>) -> &str {
    line.and_then(|l| std::str::from_utf8(l).ok()).unwrap_or("")
}

fn number(line: Option<&[u8]>) -> Option<u64> {
    text(line).parse().ok()
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::TARGETS;

    fn fuzz_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .map(|e| e.expect("a directory entry").path())
                .collect(),
            Err(_) => Vec::new(),
        };
        out.sort();
        out
    }

    /// What `cargo xtask test` runs of the fuzzing: every seed and every
    /// crash found so far (`fuzz/regressions/<target>/`), through its
    /// target, on stable, without sanitizers.
    #[test]
    fn seeds_and_regressions_pass_their_targets() {
        let mut failed = Vec::new();
        for (name, body) in TARGETS {
            let seeds = files(&fuzz_dir().join("corpus").join(name));
            assert!(!seeds.is_empty(), "{name}: no seed corpus");
            for path in seeds
                .iter()
                .chain(&files(&fuzz_dir().join("regressions").join(name)))
            {
                let data = std::fs::read(path).expect("a corpus file");
                if std::panic::catch_unwind(|| body(&data)).is_err() {
                    failed.push(path.display().to_string());
                }
            }
        }
        assert!(failed.is_empty(), "failed: {failed:?}");
    }

    /// Every corpus folder is a target's, and every target has its binary.
    #[test]
    fn corpora_and_binaries_match_the_targets() {
        let names: Vec<&str> = TARGETS.iter().map(|t| t.0).collect();
        for dir in ["corpus", "regressions"] {
            for d in files(&fuzz_dir().join(dir)) {
                let n = d.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                assert!(names.contains(&n), "{}: no such target", d.display());
            }
        }
        for name in names {
            let bin = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
            let src = std::fs::read_to_string(&bin).expect("the target's binary");
            assert!(
                src.contains(&format!("balancer::fuzz::{name}(")),
                "{}",
                bin.display()
            );
        }
    }
}
