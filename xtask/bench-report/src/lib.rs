//! The bench report's building blocks (schema `balancer-bench/2`; its shape
//! is checked by xtask's `report::validate`): a section's figures, where
//! its load generator and system under test ran, and the version lines of
//! the outside tools it measured against.
//!
//! One definition for both writers of sections: the benchmark programs
//! (`xtask/bench/`) and xtask's own runners (HTTP, packets/s, control
//! plane). Kept free of the data plane so xtask builds without it.

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

pub const SCHEMA: &str = "balancer-bench/2";

// ---- building sections ------------------------------------------------------

/// A target and whether the figure met it.
pub struct Target {
    pub text: String,
    pub met: bool,
}

impl Target {
    /// `ratio <= limit` ("<= 1.2x HAProxy").
    pub fn ratio_at_most(ratio: f64, limit: f64, peer: &str) -> Target {
        Target {
            text: format!("<= {limit}x {peer}"),
            met: ratio <= limit,
        }
    }

    /// `ratio >= limit` (">= 1x HAProxy").
    pub fn ratio_at_least(ratio: f64, limit: f64, peer: &str) -> Target {
        Target {
            text: format!(">= {limit}x {peer}"),
            met: ratio >= limit,
        }
    }

    /// `value < limit` in the figure's own unit ("< 10 ms").
    pub fn below(value: f64, limit: f64, unit: &str) -> Target {
        Target {
            text: format!("< {limit} {unit}"),
            met: value < limit,
        }
    }
}

/// One entry of a section's "figures".
pub struct Figure {
    /// Kebab-case, unique in its section.
    pub id: String,
    pub what: String,
    pub unit: &'static str,
    pub value: f64,
    /// (peer name, peer value), measured in the same run.
    pub peer: Option<(String, f64)>,
    pub target: Option<Target>,
}

impl Figure {
    /// A measured figure without peer or target.
    pub fn new(
        id: impl Into<String>,
        what: impl Into<String>,
        unit: &'static str,
        value: f64,
    ) -> Self {
        Figure {
            id: id.into(),
            what: what.into(),
            unit,
            value,
            peer: None,
            target: None,
        }
    }

    pub fn peer(mut self, name: impl Into<String>, value: f64) -> Self {
        self.peer = Some((name.into(), value));
        self
    }

    pub fn target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    /// value / peer value.
    pub fn ratio(&self) -> Option<f64> {
        self.peer.as_ref().map(|(_, p)| self.value / p)
    }

    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "what": self.what,
            "unit": self.unit,
            "value": self.value,
            "peer": self.peer.as_ref().map(|(name, value)| json!({"name": name, "value": value})),
            "ratio": self.ratio(),
            "target": self.target.as_ref().map(|t| json!({
                "text": t.text,
                "result": if t.met { "meets" } else { "misses" },
            })),
            "measured": true,
        })
    }
}

/// Where the load generator and the system under test ran.
pub struct Cpus {
    pub generator: Option<Vec<usize>>,
    pub subject: Option<Vec<usize>>,
    pub note: String,
}

impl Cpus {
    pub fn json(&self) -> Value {
        let shared = match (&self.generator, &self.subject) {
            (Some(g), Some(s)) => g.iter().any(|c| s.contains(c)),
            // Not pinned (or nothing to pin): the scheduler may put them
            // anywhere, together.
            _ => true,
        };
        json!({
            "generator": self.generator,
            "subject": self.subject,
            "shared": shared,
            "note": self.note,
        })
    }
}

/// The median of `x`: the middle value, or the mean of the two middle
/// ones for an even count (NaN for none). (The sections used to take the
/// upper of the two: with 12 trials, the 7th of 12.)
pub fn median(x: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = x.into_iter().collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The CPUs this process may run on, in order.
pub fn allowed_cpus() -> anyhow::Result<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the call fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) != 0 {
            bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
        }
        let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
        Ok((0..max).filter(|&c| libc::CPU_ISSET(c, &set)).collect())
    }
}

/// A command line as one shell-pasteable string.
pub fn command_line(cmd: &std::process::Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$;&|".contains(c)) {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first line `tool <args>` prints (stdout or stderr: `wrk -v` exits
/// non-zero and `haproxy -v` prints to stdout).
pub fn tool_version(tool: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(tool)
        .args(args)
        .output()
        .with_context(|| format!("running {tool} {}", args.join(" ")))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
        .with_context(|| format!("{tool} {} printed nothing", args.join(" ")))
}

#[cfg(test)]
mod median_tests {
    #[test]
    fn median_of_odd_even_and_no_values() {
        assert_eq!(super::median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median([4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(super::median([]).is_nan());
    }
}
