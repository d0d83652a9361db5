//! Plots of a bench report, drawn by xtask after every section ran: one PNG
//! and one SVG per section that has something to plot. A section only
//! provides data (its figures and detail keys); a section that is not in
//! the report is skipped.
//!
//! - `xdp-testrun`: ns/packet per case, balancer vs the bare program;
//! - `http-cookie`: requests/s and p99 latency, balancer vs HAProxy (cookie
//!   at 32 and 1,000 connections, stick on src at 32);
//! - `https`: TLS handshakes/s (full: ECDSA P-256, RSA 2048, ECDSA with
//!   balancer on ring; resumed), keep-alive requests/s and p99 latency over
//!   TLS, balancer vs HAProxy;
//! - `affinity`: share of clients moved vs the number of servers, one line
//!   per series of its `series` detail key (`n` is the x axis);
//! - `xdp-pps`: packets/s per system, from the figures in packets/s and
//!   their peers.
//!
//! Text is rendered with ab_glyph from a TTF file (fonts-dejavu-core,
//! installed by `cargo xtask setup`), so no fontconfig is needed.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

use anyhow::{Context as _, anyhow, bail};
use plotters::{coord::Shift, prelude::*};
use serde_json::Value;

use crate::report::num;

/// The font of every plot.
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (1000, 560);
/// Series colours, in order (balancer first).
const COLORS: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
];

/// One plot: a title and panels side by side.
struct Plot {
    title: String,
    panels: Vec<Panel>,
}

enum Panel {
    /// Groups of bars: `groups[i].1[j]` is series `j` in group `i`.
    Bars {
        y_desc: String,
        series: Vec<String>,
        groups: Vec<(String, Vec<f64>)>,
    },
    /// Lines over a shared x axis.
    Lines {
        x_desc: String,
        y_desc: String,
        x: Vec<f64>,
        series: Vec<(String, Vec<f64>)>,
    },
}

/// Draw every plot the report has data for into `out`; returns
/// (section name, PNG path) of each plot written (the SVG is next to it).
pub fn write_all(report: &Value, out: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    register_font()?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Vec::new();
    for s in report["sections"].as_array().into_iter().flatten() {
        let name = s["name"].as_str().unwrap_or_default();
        let plot = match name {
            "xdp-testrun" => xdp_testrun(s),
            "http-cookie" => http_cookie(s),
            "https" => https(s),
            "affinity" => affinity(s),
            "xdp-pps" => xdp_pps(s),
            _ => continue,
        };
        let Some(plot) = plot else {
            println!("plots: {name}: nothing to plot in its figures, skipped");
            continue;
        };
        let png = out.join(format!("{name}.png"));
        let svg = out.join(format!("{name}.svg"));
        draw(BitMapBackend::new(&png, SIZE).into_drawing_area(), &plot)
            .with_context(|| format!("drawing {}", png.display()))?;
        draw(SVGBackend::new(&svg, SIZE).into_drawing_area(), &plot)
            .with_context(|| format!("drawing {}", svg.display()))?;
        println!("plots: {} and {}", png.display(), svg.display());
        written.push((name.to_owned(), png));
    }
    Ok(written)
}

fn register_font() -> anyhow::Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let bytes = std::fs::read(FONT).map_err(|e| {
            format!(
                "reading the plot font {FONT}: {e} (cargo xtask setup installs fonts-dejavu-core)"
            )
        })?;
        // Plotters keeps fonts for the life of the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font(FAMILY, FontStyle::Normal, bytes)
            .map_err(|_| format!("{FONT} is not a font plotters can read"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

// ---- what each section's plot shows ------------------------------------------

fn figures(s: &Value) -> impl Iterator<Item = &Value> {
    s["figures"].as_array().into_iter().flatten()
}

fn xdp_testrun(s: &Value) -> Option<Plot> {
    let mut peer_names = Vec::new();
    let groups: Vec<(String, Vec<f64>)> = figures(s)
        .filter(|f| f["unit"] == "ns/packet" && f["peer"].is_object())
        .filter_map(|f| {
            peer_names.push(f["peer"]["name"].as_str().unwrap_or("bare").to_owned());
            Some((
                f["id"].as_str()?.to_owned(),
                vec![f["value"].as_f64()?, f["peer"]["value"].as_f64()?],
            ))
        })
        .collect();
    (!groups.is_empty()).then(|| Plot {
        title: "xdp-testrun: ns/packet through BPF_PROG_TEST_RUN (lower is better)".into(),
        panels: vec![Panel::Bars {
            y_desc: "ns/packet".into(),
            // Most cases run the balancer program; reference cases run
            // their own program (their figure's "what" says which).
            series: vec!["measured case".into(), "bare program (peer)".into()],
            groups,
        }],
    })
}

/// The peer's name of `id`, a figure with a peer.
fn peer_of(s: &Value, id: &str) -> Option<String> {
    let f = figures(s).find(|f| f["id"] == id && f["peer"].is_object())?;
    Some(f["peer"]["name"].as_str().unwrap_or("HAProxy").to_owned())
}

/// Bars of balancer against `peer`: one group per (figure id, label) whose
/// figure has a peer.
fn versus(s: &Value, peer: &str, ids: &[(&str, &str)], y: &str) -> Panel {
    let groups = ids
        .iter()
        .filter_map(|(id, label)| {
            let f = figures(s).find(|f| f["id"] == *id && f["peer"].is_object())?;
            Some((
                (*label).to_owned(),
                vec![f["value"].as_f64()?, f["peer"]["value"].as_f64()?],
            ))
        })
        .collect();
    Panel::Bars {
        y_desc: y.into(),
        series: vec!["balancer".into(), peer.to_owned()],
        groups,
    }
}

fn http_cookie(s: &Value) -> Option<Plot> {
    let peer = peer_of(s, "requests-per-s")?;
    // One group per load: wrk's usual connections, and 1,000 when measured.
    let loads = |ids: [&'static str; 3]| {
        ids.into_iter().zip([
            "cookie, 32 connections",
            "cookie, 1000 connections",
            "stick on src, 32 connections",
        ])
    };
    let rps: Vec<_> = loads([
        "requests-per-s",
        "requests-per-s-1000-connections",
        "stick-requests-per-s",
    ])
    .collect();
    let p99: Vec<_> = loads([
        "latency-p99",
        "latency-p99-1000-connections",
        "stick-latency-p99",
    ])
    .collect();
    Some(Plot {
        title: format!("http-cookie: balancer vs {peer} under wrk"),
        panels: vec![
            versus(s, &peer, &rps, "requests/s (higher is better)"),
            versus(s, &peer, &p99, "p99 latency, us (lower is better)"),
        ],
    })
}

fn https(s: &Value) -> Option<Plot> {
    let peer = peer_of(s, "handshakes-per-s-ecdsa")?;
    Some(Plot {
        title: format!("https: balancer vs {peer} under wrk, TLS 1.3"),
        panels: vec![
            versus(
                s,
                &peer,
                &[
                    ("handshakes-per-s-ecdsa", "ECDSA"),
                    ("handshakes-per-s-rsa", "RSA"),
                    ("handshakes-per-s-ecdsa-ring", "ring"),
                    ("handshakes-per-s-ecdsa-resumed", "resumed"),
                ],
                "TLS handshakes/s (higher is better)",
            ),
            versus(
                s,
                &peer,
                &[("tls-requests-per-s", "keep-alive, 32 connections")],
                "requests/s over TLS (higher is better)",
            ),
            versus(
                s,
                &peer,
                &[("tls-latency-p99", "keep-alive, 32 connections")],
                "p99 latency over TLS, us (lower is better)",
            ),
        ],
    })
}

fn affinity(s: &Value) -> Option<Plot> {
    let series = s["series"].as_object()?;
    let x: Vec<f64> = series
        .get("n")?
        .as_array()?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    // `recover_*` series (the failed server comes back) get a panel of
    // their own; a series the section marks as not measured is a model.
    let (mut fail, mut recover) = (Vec::new(), Vec::new());
    for (key, v) in series.iter().filter(|(k, _)| *k != "n") {
        let Some(ys) = v
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect::<Vec<_>>())
            .filter(|ys| ys.len() == x.len())
        else {
            continue;
        };
        let (list, base) = match key.strip_prefix("recover_") {
            Some(base) => (&mut recover, base),
            None => (&mut fail, key.as_str()),
        };
        let model = series
            .get("measured")
            .and_then(|m| m.get(base))
            .is_some_and(|m| m == false);
        let label = base.replace('_', " ") + if model { " (model)" } else { "" };
        list.push((label, ys));
    }
    let panel = |y_desc: &str, series: Vec<(String, Vec<f64>)>| Panel::Lines {
        x_desc: "N (servers)".into(),
        y_desc: y_desc.into(),
        x: x.clone(),
        series,
    };
    let mut panels = Vec::new();
    if !fail.is_empty() {
        panels.push(panel("share of clients moved when 1 of N fails", fail));
    }
    if !recover.is_empty() {
        panels.push(panel("share moved when it comes back", recover));
    }
    (!x.is_empty() && !panels.is_empty()).then(|| Plot {
        title: "affinity: share of clients moved when 1 of N servers fails, and when it comes back"
            .into(),
        panels,
    })
}

fn xdp_pps(s: &Value) -> Option<Plot> {
    // The section's figures, by id: (figure, value or its peer's, label).
    let find = |id: &str| figures(s).find(|f| f["id"] == id);
    let value = |id: &str| find(id).and_then(|f| f["value"].as_f64());
    let peer = |id: &str| find(id).and_then(|f| f["peer"]["value"].as_f64());
    let bars = |list: Vec<(&str, Option<f64>)>| -> Vec<(String, Vec<f64>)> {
        list.into_iter()
            .filter_map(|(label, v)| Some((label.to_owned(), vec![v?])))
            .collect()
    };
    let panels: Vec<Panel> = [
        (
            "delivered packets/s, under balancer gen",
            bars(vec![
                (
                    "bare XDP_TX",
                    value("pps-bare").or_else(|| peer("pps-stick")),
                ),
                ("balancer", value("pps-stick")),
                ("nftables", value("pps-nft").or_else(|| peer("pps-vs-nft"))),
            ]),
        ),
        (
            "delivered packets/s, under trafgen",
            bars(vec![
                ("balancer", value("pps-vs-nft-trafgen")),
                ("nftables", peer("pps-vs-nft-trafgen")),
            ]),
        ),
        (
            "packets/s sent by the generator",
            bars(vec![
                ("balancer gen", value("gen-pps")),
                ("trafgen", peer("gen-pps")),
            ]),
        ),
    ]
    .into_iter()
    .filter(|(_, groups)| !groups.is_empty())
    .map(|(y_desc, groups)| Panel::Bars {
        y_desc: y_desc.into(),
        series: vec!["packets/s".into()],
        groups,
    })
    .collect();
    (!panels.is_empty()).then(|| Plot {
        title: "xdp-pps: packets/s per system (higher is better), by load generator".into(),
        panels,
    })
}

// ---- drawing ---------------------------------------------------------------------

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, plot: &Plot) -> anyhow::Result<()> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{e}");
    root.fill(&WHITE).map_err(e)?;
    let root = root
        .titled(&plot.title, (FAMILY, 22).into_font())
        .map_err(e)?;
    let n = plot.panels.len().max(1);
    for (area, panel) in root.split_evenly((1, n)).iter().zip(&plot.panels) {
        match panel {
            Panel::Bars {
                y_desc,
                series,
                groups,
            } => bars(area, y_desc, series, groups)?,
            Panel::Lines {
                x_desc,
                y_desc,
                x,
                series,
            } => lines(area, x_desc, y_desc, x, series)?,
        }
    }
    root.present().map_err(e)?;
    Ok(())
}

fn bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    y_desc: &str,
    series: &[String],
    groups: &[(String, Vec<f64>)],
) -> anyhow::Result<()> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{e}");
    let top = groups
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    if top <= 0.0 {
        bail!("no positive value to plot");
    }
    // Group i is centred on x = i; only whole x values get a label.
    let n = groups.len();
    let label = |x: &f64| {
        if (x - x.round()).abs() > 1e-6 || *x < -0.1 {
            return String::new();
        }
        groups
            .get(x.round() as usize)
            .map_or(String::new(), |(l, _)| l.clone())
    };
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5..n as f64 - 0.5, 0.0..top * 1.15)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n + 2)
        .x_label_formatter(&label)
        .y_label_formatter(&|v| num(*v))
        .y_desc(y_desc)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .draw()
        .map_err(e)?;
    let width = 0.7 / series.len().max(1) as f64;
    for (j, name) in series.iter().enumerate() {
        let color = COLORS[j % COLORS.len()];
        let rects = groups.iter().enumerate().filter_map(|(i, (_, v))| {
            let y = *v.get(j)?;
            let x0 = i as f64 - 0.35 + j as f64 * width;
            y.is_finite()
                .then(|| Rectangle::new([(x0, 0.0), (x0 + width * 0.95, y)], color.filled()))
        });
        let drawn = chart.draw_series(rects).map_err(e)?;
        if series.len() > 1 {
            drawn.label(name.as_str()).legend(move |(x, y)| {
                Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())
            });
        }
        let values = groups.iter().enumerate().filter_map(|(i, (_, v))| {
            let y = *v.get(j)?;
            let x = i as f64 - 0.35 + (j as f64 + 0.1) * width;
            y.is_finite()
                .then(|| Text::new(num(y), (x, y + top * 0.01), (FAMILY, 13).into_font()))
        });
        chart.draw_series(values).map_err(e)?;
    }
    if series.len() > 1 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FAMILY, 14))
            .draw()
            .map_err(e)?;
    }
    Ok(())
}

fn lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    x_desc: &str,
    y_desc: &str,
    x: &[f64],
    series: &[(String, Vec<f64>)],
) -> anyhow::Result<()> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{e}");
    let finite = |v: &&f64| v.is_finite();
    let (x0, x1) = x
        .iter()
        .filter(finite)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter())
        .filter(finite)
        .fold(0.0, |a: f64, &v| a.max(v));
    if x0.partial_cmp(&x1) != Some(std::cmp::Ordering::Less) || top <= 0.0 {
        bail!("nothing to draw: x from {x0} to {x1}, y up to {top}");
    }
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        // Headroom above the lines for the legend.
        .build_cartesian_2d(x0..x1, 0.0..top * 1.45)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|v| {
            if v.fract() == 0.0 {
                format!("{v:.0}")
            } else {
                num(*v)
            }
        })
        .y_label_formatter(&|v| num(*v))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .draw()
        .map_err(e)?;
    for (j, (name, ys)) in series.iter().enumerate() {
        let color = COLORS[j % COLORS.len()];
        // Earlier lines wider: a later line on top of an equal earlier one
        // leaves it visible at its edges.
        let width = 2 + 2 * (series.len() - j) as u32;
        let points: Vec<(f64, f64)> = x
            .iter()
            .zip(ys)
            .filter(|(a, b)| a.is_finite() && b.is_finite())
            .map(|(a, b)| (*a, *b))
            .collect();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.mix(0.8).stroke_width(width),
            ))
            .map_err(e)?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new([(x, y), (x + 18, y)], color.stroke_width(width))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FAMILY, 14))
        .draw()
        .map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Every plot kind draws from a small report (the pictures themselves
    /// are checked by looking at them).
    #[test]
    fn draws_each_section_kind() {
        if !Path::new(FONT).exists() {
            eprintln!("skipped: {FONT} is missing (cargo xtask setup installs it)");
            return;
        }
        let fig = |id: &str, unit: &str, v: f64, peer: Option<(&str, f64)>| {
            json!({"id": id, "what": id, "unit": unit, "value": v,
                   "peer": peer.map(|(n, p)| json!({"name": n, "value": p}))})
        };
        let report = json!({"sections": [
            {"name": "xdp-testrun", "figures": [
                fig("bare", "ns/packet", 34.0, None),
                fig("stick-hit-v4", "ns/packet", 157.0, Some(("bare", 34.0))),
                fig("non-vip-v4", "ns/packet", 80.0, Some(("bare", 42.0)))]},
            {"name": "http-cookie", "figures": [
                fig("requests-per-s", "requests/s", 20_000.0, Some(("HAProxy 2.6", 23_000.0))),
                fig("latency-p99", "us", 3000.0, Some(("HAProxy 2.6", 3100.0)))]},
            {"name": "https", "figures": [
                fig("handshakes-per-s-ecdsa", "handshakes/s", 4000.0, Some(("HAProxy 2.6", 3000.0))),
                fig("handshakes-per-s-rsa", "handshakes/s", 1000.0, Some(("HAProxy 2.6", 900.0))),
                fig("tls-requests-per-s", "requests/s", 20_000.0, Some(("HAProxy 2.6", 21_000.0))),
                fig("tls-latency-p99", "us", 3000.0, Some(("HAProxy 2.6", 3100.0)))]},
            {"name": "affinity", "figures": [], "series": {
                "n": [2, 3, 4], "stick_table": [0.0, 0.0, 0.0], "modulo": [0.5, 0.66, 0.75],
                "ideal": [0.5, 0.33, 0.25]}},
            {"name": "xdp-pps", "figures": [
                fig("pps-stick", "packets/s", 1e6, Some(("bare", 2e6))),
                fig("pps-bare", "packets/s", 2e6, None)]},
            {"name": "control-plane", "figures": []},
        ]});
        let dir = std::env::temp_dir().join(format!("xtask-plots-{}", std::process::id()));
        let written = write_all(&report, &dir).unwrap();
        let names: Vec<&str> = written.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["xdp-testrun", "http-cookie", "https", "affinity", "xdp-pps"]
        );
        for (_, png) in &written {
            let bytes = std::fs::read(png).unwrap();
            assert!(bytes.starts_with(b"\x89PNG"), "{}", png.display());
            let svg = std::fs::read_to_string(png.with_extension("svg")).unwrap();
            assert!(svg.contains("<svg"));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
