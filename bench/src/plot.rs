//! Minimal SVG line charts (no font or system libraries needed): latency distributions and
//! scaling curves, written next to report.json.

use std::fmt::Write as _;

use anyhow::Result;

use crate::mesh::Run;

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// A line: label, dashed?, points.
pub struct Series {
    pub label: String,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

/// Writes a chart with linear axes to `target/bench/<file>`.
pub fn chart(
    file: &str,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<()> {
    let (w, h, ml, mr, mt, mb) = (760.0, 460.0, 70.0, 200.0, 40.0, 50.0);
    let pts = series.iter().flat_map(|s| s.points.iter());
    let xmax = pts.clone().map(|p| p.0).fold(0.0f64, f64::max).max(1e-9);
    let ymax = pts.map(|p| p.1).fold(0.0f64, f64::max).max(1e-9);
    let sx = |x: f64| ml + x / xmax * (w - ml - mr);
    let sy = |y: f64| h - mb - y / ymax * (h - mt - mb);
    let mut s = String::new();
    writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    )?;
    writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#)?;
    writeln!(
        s,
        r#"<text x="{}" y="22" font-size="15">{}</text>"#,
        ml,
        esc(title)
    )?;
    // Axes, ticks and grid.
    writeln!(
        s,
        r#"<line x1="{ml}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
        h - mb,
        w - mr,
        h - mb
    )?;
    writeln!(
        s,
        r#"<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{}" stroke="black"/>"#,
        h - mb
    )?;
    for i in 0..=5 {
        let fx = xmax * i as f64 / 5.0;
        let fy = ymax * i as f64 / 5.0;
        writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            sx(fx),
            h - mb + 16.0,
            num(fx)
        )?;
        writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            ml - 6.0,
            sy(fy) + 4.0,
            num(fy)
        )?;
        writeln!(
            s,
            r##"<line x1="{ml}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="#eee"/>"##,
            sy(fy),
            w - mr,
            sy(fy)
        )?;
    }
    writeln!(
        s,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
        (ml + w - mr) / 2.0,
        h - 12.0,
        esc(x_label)
    )?;
    writeln!(
        s,
        r#"<text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">{}</text>"#,
        (mt + h - mb) / 2.0,
        (mt + h - mb) / 2.0,
        esc(y_label)
    )?;
    for (i, se) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = se
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let dash = if se.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        writeln!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2"{dash} points="{}"/>"#,
            path.join(" ")
        )?;
        let ly = mt + 18.0 * i as f64 + 10.0;
        writeln!(
            s,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="2"{dash}/>"#,
            w - mr + 10.0,
            w - mr + 34.0
        )?;
        writeln!(
            s,
            r#"<text x="{}" y="{}">{}</text>"#,
            w - mr + 40.0,
            ly + 4.0,
            esc(&se.label)
        )?;
    }
    writeln!(s, "</svg>")?;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(file), s)?;
    Ok(())
}

fn num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Cumulative distribution of post-to-stored latency, Samizdat (solid) and baseline (dashed).
pub fn latency_cdf(runs: &[(Run, Run)]) -> Result<()> {
    let cdf = |r: &Run| -> Vec<(f64, f64)> {
        let n = r.latencies.len().max(1) as f64;
        let step = (r.latencies.len() / 200).max(1);
        r.latencies
            .iter()
            .enumerate()
            .filter(|(i, _)| i % step == 0 || *i + 1 == r.latencies.len())
            .map(|(i, l)| (*l, (i + 1) as f64 / n * 100.0))
            .collect()
    };
    let mut series = Vec::new();
    for (s, b) in runs {
        series.push(Series {
            label: format!("samizdat N={}", s.nodes),
            dashed: false,
            points: cdf(s),
        });
        series.push(Series {
            label: format!("baseline N={}", b.nodes),
            dashed: true,
            points: cdf(b),
        });
    }
    chart(
        "mesh_latency_cdf.svg",
        "Post to stored at follower: latency distribution",
        "latency (ms)",
        "% of deliveries",
        &series,
    )
}

/// p50 and p99 latency against mesh size.
pub fn scaling(runs: &[(Run, Run)]) -> Result<()> {
    let line = |baseline: bool, p: f64| -> Vec<(f64, f64)> {
        runs.iter()
            .map(|(s, b)| if baseline { b } else { s })
            .map(|r| (r.nodes as f64, r.pct(p)))
            .collect()
    };
    let series = vec![
        Series {
            label: "samizdat p50".into(),
            dashed: false,
            points: line(false, 0.5),
        },
        Series {
            label: "samizdat p99".into(),
            dashed: false,
            points: line(false, 0.99),
        },
        Series {
            label: "baseline p50".into(),
            dashed: true,
            points: line(true, 0.5),
        },
        Series {
            label: "baseline p99".into(),
            dashed: true,
            points: line(true, 0.99),
        },
    ];
    chart(
        "mesh_scaling.svg",
        "Latency against mesh size (20 posts/s)",
        "nodes",
        "latency (ms)",
        &series,
    )
}
