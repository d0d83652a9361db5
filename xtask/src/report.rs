//! The bench report (schema `balancer-bench/2`, see `notes/bench-schema.md`):
//! the schema check that `cargo xtask bench` runs on every report it writes
//! and `cargo xtask test` runs on a quick one, and the README "Performance"
//! section generated from a report. The builders for the uniform part of a
//! section (its figures, where the load generator and the system under test
//! ran) are the `balancer-bench-report` crate's, shared with the benchmark
//! programs, and re-exported here.
//!
//! The check is about shape, never about values: a figure that misses its
//! target is a valid figure.

use std::{collections::BTreeSet, fmt::Write as _, path::Path};

use anyhow::{Context as _, bail};
pub use balancer_bench_report::{
    Cpus, Figure, SCHEMA, Target, allowed_cpus, command_line, median, tool_version,
};
use serde_json::{Map, Value};

// ---- the schema check -------------------------------------------------------

/// Check `report` against the schema; `expected` sections must each be
/// there exactly once. Every problem found is returned, one per line.
pub fn validate(report: &Value, expected: &[&str]) -> Result<(), Vec<String>> {
    let mut errs = Vec::new();
    let mut err = |path: &str, what: &str| errs.push(format!("{path}: {what}"));
    let Some(top) = report.as_object() else {
        return Err(vec!["report: not a JSON object".into()]);
    };
    if top.get("schema").and_then(Value::as_str) != Some(SCHEMA) {
        err("schema", &format!("must be {SCHEMA:?}"));
    }
    check_number(top, "generated_unix_s", "", &mut err, false);
    check_text(top, "command", "", &mut err);
    if !top.get("quick").is_some_and(Value::is_boolean) {
        err("quick", "must be true or false");
    }
    match top.get("machine").and_then(Value::as_object) {
        None => err("machine", "must be an object"),
        Some(m) => {
            check_text(m, "cpu_model", "machine.", &mut err);
            check_text(m, "kernel_release", "machine.", &mut err);
            check_number(m, "cpus_online", "machine.", &mut err, true);
            if !m
                .get("git_commit")
                .is_some_and(|v| v.is_null() || v.is_string())
            {
                err("machine.git_commit", "must be a string or null");
            }
            if !m
                .get("git_dirty")
                .is_some_and(|v| v.is_null() || v.is_boolean())
            {
                err("machine.git_dirty", "must be true, false or null");
            }
        }
    }
    if !top.get("xtask").is_some_and(Value::is_object) {
        err("xtask", "must be an object");
    }
    let Some(sections) = top.get("sections").and_then(Value::as_array) else {
        err("sections", "must be an array");
        return Err(errs);
    };
    let names: Vec<&str> = sections
        .iter()
        .map(|s| s.get("name").and_then(Value::as_str).unwrap_or(""))
        .collect();
    for want in expected {
        match names.iter().filter(|n| *n == want).count() {
            0 => err("sections", &format!("section {want:?} is missing")),
            1 => {}
            n => err("sections", &format!("section {want:?} is there {n} times")),
        }
    }
    for (i, s) in sections.iter().enumerate() {
        let path = if names[i].is_empty() {
            format!("sections[{i}]")
        } else {
            format!("sections[{}]", names[i])
        };
        check_section(s, &path, &mut err);
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

fn check_section(s: &Value, path: &str, err: &mut impl FnMut(&str, &str)) {
    let Some(s) = s.as_object() else {
        return err(path, "must be an object");
    };
    let p = format!("{path}.");
    for key in ["name", "about", "how"] {
        check_text(s, key, &p, err);
    }
    if !s
        .get("commands")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().all(|c| c.as_str().is_some_and(|c| !c.is_empty())))
    {
        err(&format!("{p}commands"), "must be an array of command lines");
    }
    if !s
        .get("versions")
        .and_then(Value::as_object)
        .is_some_and(|v| {
            v.values()
                .all(|v| v.as_str().is_some_and(|v| !v.is_empty()))
        })
    {
        err(
            &format!("{p}versions"),
            "must be an object of version strings",
        );
    }
    match s.get("cpus").and_then(Value::as_object) {
        None => err(&format!("{p}cpus"), "must be an object"),
        Some(c) => {
            for key in ["generator", "subject"] {
                let ok = c.get(key).is_some_and(|v| {
                    v.is_null()
                        || v.as_array()
                            .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_u64))
                });
                if !ok {
                    err(&format!("{p}cpus.{key}"), "must be CPU ids or null");
                }
            }
            if !c.get("shared").is_some_and(Value::is_boolean) {
                err(&format!("{p}cpus.shared"), "must be true or false");
            }
            check_text(c, "note", &format!("{p}cpus."), err);
        }
    }
    if let Some(skipped) = s.get("skipped_peers") {
        let ok = skipped.as_array().is_some_and(|a| {
            a.iter().all(|x| {
                ["name", "reason"].iter().all(|k| {
                    x.get(k)
                        .and_then(Value::as_str)
                        .is_some_and(|v| !v.is_empty())
                })
            })
        });
        if !ok {
            err(
                &format!("{p}skipped_peers"),
                "must be an array of {name, reason}",
            );
        }
    }
    let Some(figures) = s.get("figures").and_then(Value::as_array) else {
        return err(&format!("{p}figures"), "must be an array");
    };
    if figures.is_empty() {
        err(&format!("{p}figures"), "must not be empty");
    }
    let mut ids = BTreeSet::new();
    for (i, f) in figures.iter().enumerate() {
        let id = f.get("id").and_then(Value::as_str).unwrap_or("");
        let fp = if id.is_empty() {
            format!("{p}figures[{i}]")
        } else {
            format!("{p}figures[{id}]")
        };
        if !id.is_empty() && !ids.insert(id) {
            err(&fp, "id is not unique in the section");
        }
        check_figure(f, &fp, err);
    }
}

fn check_figure(f: &Value, path: &str, err: &mut impl FnMut(&str, &str)) {
    let Some(f) = f.as_object() else {
        return err(path, "must be an object");
    };
    let p = format!("{path}.");
    match f.get("id").and_then(Value::as_str) {
        Some(id) if is_kebab(id) => {}
        _ => err(&format!("{p}id"), "must be a kebab-case id"),
    }
    check_text(f, "what", &p, err);
    check_text(f, "unit", &p, err);
    check_number(f, "value", &p, err, true);
    if !f.get("measured").is_some_and(Value::is_boolean) {
        err(&format!("{p}measured"), "must be true or false");
    }
    let value = f.get("value").and_then(Value::as_f64);
    match f.get("peer") {
        Some(Value::Null) => {
            if !f.get("ratio").is_some_and(Value::is_null) {
                err(&format!("{p}ratio"), "must be null when there is no peer");
            }
        }
        Some(Value::Object(peer)) => {
            check_text(peer, "name", &format!("{p}peer."), err);
            check_number(peer, "value", &format!("{p}peer."), err, true);
            let expect = value.zip(peer.get("value").and_then(Value::as_f64));
            match (f.get("ratio").and_then(Value::as_f64), expect) {
                (Some(r), Some((v, pv))) if pv != 0.0 => {
                    let want = v / pv;
                    // Rounded ratios are fine: 1 % and 0.001 of slack.
                    if (r - want).abs() > 0.01 * want.abs() + 1e-3 {
                        err(
                            &format!("{p}ratio"),
                            &format!("{r} is not value/peer.value ({want})"),
                        );
                    }
                }
                (Some(r), _) if r.is_finite() => {}
                _ => err(
                    &format!("{p}ratio"),
                    "must be a number when there is a peer",
                ),
            }
        }
        _ => err(&format!("{p}peer"), "must be {name, value} or null"),
    }
    match f.get("target") {
        Some(Value::Null) => {}
        Some(Value::Object(t)) => {
            check_text(t, "text", &format!("{p}target."), err);
            if !matches!(
                t.get("result").and_then(Value::as_str),
                Some("meets" | "misses")
            ) {
                err(
                    &format!("{p}target.result"),
                    "must be \"meets\" or \"misses\"",
                );
            }
        }
        _ => err(&format!("{p}target"), "must be {text, result} or null"),
    }
}

fn check_text(o: &Map<String, Value>, key: &str, prefix: &str, err: &mut impl FnMut(&str, &str)) {
    let blank = o
        .get(key)
        .and_then(Value::as_str)
        .is_none_or(|s| s.trim().is_empty());
    if blank {
        err(&format!("{prefix}{key}"), "must be a non-empty string");
    }
}

fn check_number(
    o: &Map<String, Value>,
    key: &str,
    prefix: &str,
    err: &mut impl FnMut(&str, &str),
    non_zero: bool,
) {
    match o.get(key).and_then(Value::as_f64) {
        Some(v) if v.is_finite() && !(non_zero && v == 0.0) => {}
        _ => err(
            &format!("{prefix}{key}"),
            if non_zero {
                "must be a non-zero number"
            } else {
                "must be a number"
            },
        ),
    }
}

fn is_kebab(id: &str) -> bool {
    !id.is_empty()
        && id.split('-').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Read and check a report file.
pub fn validate_file(path: &Path, expected: &[&str]) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let report: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if let Err(errs) = validate(&report, expected) {
        bail!(
            "{} does not follow the bench report schema {SCHEMA}:\n  {}",
            path.display(),
            errs.join("\n  ")
        );
    }
    Ok(report)
}

// ---- the README section -----------------------------------------------------

pub const README_BEGIN: &str = "<!-- bench:begin: generated by `cargo xtask bench --readme` from \
                                docs/bench/report.json; do not edit by hand -->";
pub const README_END: &str = "<!-- bench:end -->";

/// Replace what lies between the markers in `readme` with `section`.
pub fn splice_readme(readme: &str, section: &str) -> anyhow::Result<String> {
    let begin_tag = README_BEGIN.split(':').next().unwrap_or(README_BEGIN);
    let start = readme
        .find(begin_tag)
        .context("README has no `<!-- bench:begin` marker")?;
    let body = start
        + readme[start..]
            .find("-->")
            .context("unterminated bench:begin marker")?
        + 3;
    let end = body
        + readme[body..]
            .find(README_END)
            .context("README has no `<!-- bench:end -->` marker after bench:begin")?;
    Ok(format!(
        "{}{README_BEGIN}\n{}\n{}",
        &readme[..start],
        section.trim_end(),
        &readme[end..]
    ))
}

/// The markdown of a report: what ran, where, and every section's figures
/// (with peers, ratios, targets) and plots. `plots` are the plot files
/// (relative to the README) that exist, by section name.
pub fn markdown(report: &Value, plots: &[(String, String)]) -> String {
    let mut md = String::new();
    let m = &report["machine"];
    let when = report["generated_unix_s"]
        .as_u64()
        .map_or_else(|| "unknown date".to_owned(), |s| utc_date_time(s as i64));
    let commit = m["git_commit"].as_str().map_or_else(
        || "unknown commit".to_owned(),
        |c| {
            format!(
                "commit {}{}",
                &c[..c.len().min(10)],
                if m["git_dirty"] == true {
                    " with uncommitted changes"
                } else {
                    ""
                }
            )
        },
    );
    let _ = writeln!(
        md,
        "Generated by `{}` on {when}, {commit}.\n\nMachine: {}, {} CPUs online, kernel {}. \
         Full report: [docs/bench/report.json](docs/bench/report.json).{}\n",
        report["command"].as_str().unwrap_or("?"),
        m["cpu_model"].as_str().unwrap_or("unknown CPU"),
        m["cpus_online"],
        m["kernel_release"].as_str().unwrap_or("?"),
        if report["quick"] == true {
            " **Quick run** (`--quick`): fewer and shorter trials, noisier figures."
        } else {
            ""
        }
    );
    for s in report["sections"].as_array().into_iter().flatten() {
        let name = s["name"].as_str().unwrap_or("?");
        let _ = writeln!(
            md,
            "### {name}\n\n{}\n\nHow: {}\n",
            s["about"].as_str().unwrap_or(""),
            s["how"].as_str().unwrap_or("")
        );
        let cpus = &s["cpus"];
        let _ = writeln!(
            md,
            "CPUs: generator {}, subject {}{}; {}\n",
            cpu_list(&cpus["generator"]),
            cpu_list(&cpus["subject"]),
            if cpus["shared"] == true {
                " (shared)"
            } else {
                ""
            },
            cpus["note"].as_str().unwrap_or("")
        );
        if let Some(v) = s["versions"].as_object().filter(|v| !v.is_empty()) {
            let list: Vec<String> = v
                .iter()
                .map(|(k, v)| format!("{k}: `{}`", v.as_str().unwrap_or("?")))
                .collect();
            let _ = writeln!(md, "Versions: {}\n", list.join("; "));
        }
        if let Some(c) = s["commands"].as_array().filter(|c| !c.is_empty()) {
            md.push_str("Commands:\n\n```\n");
            for line in c.iter().filter_map(Value::as_str) {
                let _ = writeln!(md, "{line}");
            }
            md.push_str("```\n\n");
        }
        md.push_str("| figure | value | peer | ratio | target |\n|---|---|---|---|---|\n");
        for f in s["figures"].as_array().into_iter().flatten() {
            let unit = f["unit"].as_str().unwrap_or("");
            let value = |v: &Value| {
                v.as_f64()
                    .map_or("?".into(), |x| format!("{} {unit}", num(x)))
            };
            let peer = if f["peer"].is_object() {
                format!(
                    "{}: {}",
                    f["peer"]["name"].as_str().unwrap_or("?"),
                    value(&f["peer"]["value"])
                )
            } else {
                String::new()
            };
            let ratio = f["ratio"]
                .as_f64()
                .map_or(String::new(), |r| format!("{r:.2}x"));
            let target = if f["target"].is_object() {
                format!(
                    "{}: **{}**",
                    f["target"]["text"].as_str().unwrap_or("?"),
                    f["target"]["result"].as_str().unwrap_or("?")
                )
            } else {
                String::new()
            };
            let modelled = if f["measured"] == false {
                " (modelled)"
            } else {
                ""
            };
            let _ = writeln!(
                md,
                "| {}{modelled} (`{}`) | {} | {peer} | {ratio} | {target} |",
                cell(f["what"].as_str().unwrap_or("")),
                f["id"].as_str().unwrap_or("?"),
                value(&f["value"]),
            );
        }
        md.push('\n');
        if let Some(skipped) = s["skipped_peers"].as_array().filter(|a| !a.is_empty()) {
            for p in skipped {
                let _ = writeln!(
                    md,
                    "Peer not measured: {} ({}).\n",
                    p["name"].as_str().unwrap_or("?"),
                    p["reason"].as_str().unwrap_or("?")
                );
            }
        }
        for (section, file) in plots {
            if section == name {
                let _ = writeln!(md, "![{name}]({file})\n");
            }
        }
    }
    md
}

fn cpu_list(v: &Value) -> String {
    match v.as_array() {
        Some(a) => a.iter().map(Value::to_string).collect::<Vec<_>>().join(","),
        None => "not pinned".into(),
    }
}

/// Table-safe text.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// A figure for humans: thousands separators above 1000, 3 significant
/// digits below.
pub fn num(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1000.0 {
        let s = format!("{:.0}", a);
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        format!("{}{out}", if x < 0.0 { "-" } else { "" })
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// `YYYY-MM-DD HH:MM UTC` of a Unix time (proleptic Gregorian calendar).
fn utc_date_time(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn valid() -> Value {
        json!({
            "schema": SCHEMA,
            "generated_unix_s": 1_764_338_400,
            "command": "cargo xtask bench --quick",
            "quick": true,
            "machine": {"cpu_model": "Some CPU", "cpus_online": 2, "kernel_release": "6.18.0",
                        "git_commit": "abc", "git_dirty": false},
            "xtask": {"elapsed_s": 1.0},
            "sections": [{
                "name": "http-cookie",
                "about": "proxy vs proxy",
                "how": "wrk",
                "commands": ["wrk -t1 http://127.0.0.1:1/"],
                "versions": {"wrk": "wrk 4.1.0"},
                "cpus": {"generator": [0], "subject": [1], "shared": false, "note": "pinned"},
                "figures": [
                    Figure::new("requests-per-s", "requests/s", "requests/s", 20_000.0)
                        .peer("HAProxy", 25_000.0)
                        .target(Target::ratio_at_least(0.8, 1.0, "HAProxy"))
                        .json(),
                    Figure::new("rss", "RSS", "bytes", 1e6).json(),
                ],
                "skipped_peers": [{"name": "IPVS", "reason": "absent"}],
                "raw": [1, 2, 3],
            }],
        })
    }

    fn problems(report: &Value) -> Vec<String> {
        validate(report, &["http-cookie"]).err().unwrap_or_default()
    }

    #[test]
    fn accepts_a_valid_report() {
        assert_eq!(problems(&valid()), Vec::<String>::new());
    }

    #[test]
    fn rejects_each_kind_of_mistake() {
        type Break = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Break)> = vec![
            (
                "schema",
                Box::new(|r| r["schema"] = json!("balancer-bench/1")),
            ),
            (
                "machine.cpu_model",
                Box::new(|r| r["machine"]["cpu_model"] = json!("")),
            ),
            (
                "machine.cpus_online",
                Box::new(|r| r["machine"]["cpus_online"] = json!(0)),
            ),
            (
                "section \"http-cookie\" is missing",
                Box::new(|r| r["sections"][0]["name"] = json!("http")),
            ),
            (
                "about",
                Box::new(|r| {
                    r["sections"][0].as_object_mut().unwrap().remove("about");
                }),
            ),
            (
                "commands",
                Box::new(|r| r["sections"][0]["commands"] = json!("wrk")),
            ),
            (
                "versions",
                Box::new(|r| r["sections"][0]["versions"] = json!({"wrk": 4})),
            ),
            (
                "cpus.generator",
                Box::new(|r| r["sections"][0]["cpus"]["generator"] = json!([])),
            ),
            (
                "cpus.shared",
                Box::new(|r| r["sections"][0]["cpus"]["shared"] = json!(null)),
            ),
            (
                "figures",
                Box::new(|r| r["sections"][0]["figures"] = json!([])),
            ),
            (
                "skipped_peers",
                Box::new(|r| r["sections"][0]["skipped_peers"] = json!([{"name": "x"}])),
            ),
            (
                ".id",
                Box::new(|r| r["sections"][0]["figures"][0]["id"] = json!("requests_per_s")),
            ),
            (
                "not unique",
                Box::new(|r| r["sections"][0]["figures"][1]["id"] = json!("requests-per-s")),
            ),
            (
                ".unit",
                Box::new(|r| r["sections"][0]["figures"][0]["unit"] = json!(null)),
            ),
            (
                ".value",
                Box::new(|r| r["sections"][0]["figures"][0]["value"] = json!(0)),
            ),
            (
                ".value",
                Box::new(|r| r["sections"][0]["figures"][0]["value"] = json!("fast")),
            ),
            (
                "peer.value",
                Box::new(|r| r["sections"][0]["figures"][0]["peer"]["value"] = json!(null)),
            ),
            (
                "peer",
                Box::new(|r| r["sections"][0]["figures"][0]["peer"] = json!("HAProxy")),
            ),
            (
                ".ratio",
                Box::new(|r| r["sections"][0]["figures"][0]["ratio"] = json!(2.0)),
            ),
            (
                ".ratio",
                Box::new(|r| r["sections"][0]["figures"][0]["ratio"] = json!(null)),
            ),
            (
                ".ratio",
                Box::new(|r| r["sections"][0]["figures"][1]["ratio"] = json!(1.0)),
            ),
            (
                "target.result",
                Box::new(|r| r["sections"][0]["figures"][0]["target"]["result"] = json!("ok")),
            ),
            (
                ".measured",
                Box::new(|r| {
                    r["sections"][0]["figures"][0]
                        .as_object_mut()
                        .unwrap()
                        .remove("measured");
                }),
            ),
        ];
        for (expect, break_it) in cases {
            let mut r = valid();
            break_it(&mut r);
            let p = problems(&r);
            assert!(
                p.iter().any(|e| e.contains(expect)),
                "breaking {expect:?} gave {p:?}"
            );
        }
        // The whole report must be an object with sections.
        assert!(!problems(&json!([])).is_empty());
        assert!(!problems(&json!({"schema": SCHEMA})).is_empty());
    }

    #[test]
    fn a_section_twice_is_an_error() {
        let mut r = valid();
        let s = r["sections"][0].clone();
        r["sections"].as_array_mut().unwrap().push(s);
        assert!(problems(&r).iter().any(|e| e.contains("2 times")));
    }

    #[test]
    fn readme_splice_keeps_everything_outside_the_markers() {
        let readme = format!(
            "# x\n\n## Performance\n\nintro\n\n{README_BEGIN}\nold\n{README_END}\n\n## Next\n"
        );
        let out = splice_readme(&readme, "new table\n").unwrap();
        assert_eq!(
            out,
            format!(
                "# x\n\n## Performance\n\nintro\n\n{README_BEGIN}\nnew table\n{README_END}\n\n## Next\n"
            )
        );
        // Idempotent, and an older wording of the begin marker is replaced.
        assert_eq!(splice_readme(&out, "new table").unwrap(), out);
        let old = "<!-- bench:begin other words -->\nold\n<!-- bench:end -->\n";
        assert!(splice_readme(old, "t").unwrap().starts_with(README_BEGIN));
        assert!(splice_readme("no markers", "t").is_err());
    }

    #[test]
    fn markdown_lists_every_figure_with_its_peer() {
        let md = markdown(
            &valid(),
            &[("http-cookie".into(), "docs/bench/http-cookie.png".into())],
        );
        assert!(md.contains("2025-11-28 14:00 UTC"), "{md}");
        assert!(md.contains("| requests/s (`requests-per-s`) | 20,000 requests/s | HAProxy: 25,000 requests/s | 0.80x | >= 1x HAProxy: **misses** |"), "{md}");
        assert!(md.contains("![http-cookie](docs/bench/http-cookie.png)"));
        assert!(md.contains("wrk -t1 http://127.0.0.1:1/"));
    }

    #[test]
    fn formats() {
        assert_eq!(num(1_234_567.4), "1,234,567");
        assert_eq!(num(157.2), "157");
        assert_eq!(num(4.567), "4.57");
        assert_eq!(num(0.0061), "0.006");
        assert_eq!(utc_date_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_date_time(951_782_400), "2000-02-29 00:00 UTC");
        assert!(is_kebab("p99-9") && !is_kebab("a--b") && !is_kebab("A") && !is_kebab(""));
    }
}
