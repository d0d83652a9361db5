//! `cargo xtask install`: the release binary, the systemd units (from
//! balancer-userspace/dist/, with the binary's path written in), the
//! README and the examples, under a prefix (and a staging root for
//! packaging).

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The units, by file name.
const UNITS: [(&str, &str); 2] = [
    (
        "balancer.service",
        include_str!("../../balancer-userspace/dist/balancer.service"),
    ),
    (
        "balancer-http.service",
        include_str!("../../balancer-userspace/dist/balancer-http.service"),
    ),
];

pub struct Options {
    /// Where the binary goes (`PREFIX/bin`) and the docs (`PREFIX/share/doc/balancer`).
    pub prefix: PathBuf,
    /// Where the units go.
    pub unit_dir: PathBuf,
    /// A staging root prepended to every path written (packaging); the
    /// units still name the final paths.
    pub destdir: Option<PathBuf>,
    /// Install this binary instead of building the release one.
    pub bin: Option<PathBuf>,
}

/// What was written, for the report and the tests.
pub struct Installed {
    pub bin: PathBuf,
    pub units: Vec<PathBuf>,
    pub doc: PathBuf,
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    let built = match &opts.bin {
        Some(b) => b.clone(),
        None => {
            crate::setup::run()?;
            crate::util::build_balancer(true)?
        }
    };
    let done = install(opts, &built)?;
    println!("installed {}", done.bin.display());
    for u in &done.units {
        println!("installed {}", u.display());
    }
    println!("installed {} (README and examples)", done.doc.display());
    println!(
        "next: write /etc/balancer/balancer.toml (see {}/examples), then\n  \
         systemctl daemon-reload && systemctl enable --now balancer-http   # HTTP only, no root\n  \
         or balancer.service for XDP frontends (CAP_BPF, CAP_NET_ADMIN, ...: see the unit)",
        opts.prefix.join("share/doc/balancer").display()
    );
    Ok(())
}

/// `base` under the staging root, if any.
fn staged(destdir: Option<&Path>, base: &Path) -> PathBuf {
    match destdir {
        Some(d) => d.join(base.strip_prefix("/").unwrap_or(base)),
        None => base.to_owned(),
    }
}

fn copy_mode(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // A new file renamed into place: a running binary is not rewritten.
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp)
        .with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, to).with_context(|| format!("installing {}", to.display()))?;
    Ok(())
}

fn write_mode(to: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(to, text).with_context(|| format!("writing {}", to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Install `built` and the rest.
pub fn install(opts: &Options, built: &Path) -> anyhow::Result<Installed> {
    anyhow::ensure!(
        opts.prefix.is_absolute() && opts.unit_dir.is_absolute(),
        "--prefix and --unit-dir must be absolute paths"
    );
    let destdir = opts.destdir.as_deref();
    let bin = opts.prefix.join("bin/balancer");
    let doc = opts.prefix.join("share/doc/balancer");
    copy_mode(built, &staged(destdir, &bin), 0o755)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    copy_mode(
        &root.join("README.md"),
        &staged(destdir, &doc.join("README.md")),
        0o644,
    )?;
    let examples = root.join("examples");
    for e in std::fs::read_dir(&examples).with_context(|| examples.display().to_string())? {
        let e = e?;
        if e.file_type()?.is_file() {
            let to = doc.join("examples").join(e.file_name());
            copy_mode(&e.path(), &staged(destdir, &to), 0o644)?;
        }
    }
    let mut units = Vec::new();
    for (name, text) in UNITS {
        let text = text
            .replace("@BIN@", &bin.display().to_string())
            .replace("@DOC@", &doc.display().to_string());
        let to = staged(destdir, &opts.unit_dir.join(name));
        write_mode(&to, &text, 0o644)?;
        units.push(to);
    }
    Ok(Installed {
        bin: staged(destdir, &bin),
        units,
        doc: staged(destdir, &doc),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_the_binary_units_and_docs_and_the_units_verify() {
        let dir = std::env::temp_dir().join(format!("blb-install-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // A stand-in binary: the units only need it to exist.
        let fake = dir.join("built");
        write_mode(&fake, "#!/bin/sh\nexit 0\n", 0o755).unwrap();
        let opts = Options {
            prefix: dir.join("usr"),
            unit_dir: dir.join("units"),
            destdir: None,
            bin: Some(fake.clone()),
        };
        let done = install(&opts, &fake).unwrap();
        assert_eq!(done.bin, dir.join("usr/bin/balancer"));
        assert!(done.doc.join("examples/http-cookie-insert.toml").is_file());
        for u in &done.units {
            let text = std::fs::read_to_string(u).unwrap();
            assert!(
                !text.contains('@'),
                "{}: a placeholder is left",
                u.display()
            );
            assert!(
                text.contains(&format!("ExecStart={} run --config", done.bin.display())),
                "{text}"
            );
        }
        let http = std::fs::read_to_string(dir.join("units/balancer-http.service")).unwrap();
        assert!(http.contains("CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"));
        // systemd's own check of the units, where systemd is installed.
        if Path::new("/usr/bin/systemd-analyze").exists() {
            let out = std::process::Command::new("systemd-analyze")
                .arg("verify")
                .args(&done.units)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            // It may also complain about units on this host; only ours count.
            let ours: Vec<&str> = err.lines().filter(|l| l.contains("balancer")).collect();
            assert!(ours.is_empty(), "{err}");
        }
        // Staged: the same tree under a root, the units naming final paths.
        let staged_opts = Options {
            destdir: Some(dir.join("stage")),
            ..opts
        };
        let done = install(&staged_opts, &fake).unwrap();
        assert!(done.bin.starts_with(dir.join("stage")));
        let text = std::fs::read_to_string(&done.units[0]).unwrap();
        assert!(text.contains(&format!("ExecStart={}/usr/bin/balancer", dir.display())));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
