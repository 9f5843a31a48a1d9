//! SVG plots of a B4 report: the CDF of per-application cold-start %, and the trade-off of
//! cold starts (p75 per application, and total) against wasted memory.
//!
//! Decision worth knowing: the SVG is written by hand (axes, polylines, markers, a legend) and
//! not with a plotting crate: two fixed chart shapes do not justify a dependency tree, and the
//! output stays deterministic and diffable.

use std::fmt::Write;

use super::Report;

const W: f64 = 640.0;
const H: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 160.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 50.0;

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Style {
    Line,
    Marker,
    Ring,
}

struct Series {
    name: String,
    points: Vec<(f64, f64)>,
    style: Style,
}

impl Series {
    fn line(name: &str, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.to_owned(),
            points,
            style: Style::Line,
        }
    }
}

struct Axis {
    label: String,
    min: f64,
    max: f64,
    log: bool,
}

impl Axis {
    fn linear(label: &str, min: f64, max: f64) -> Axis {
        Axis {
            label: label.to_owned(),
            min,
            max,
            log: false,
        }
    }

    fn map(&self, v: f64, from: f64, to: f64) -> f64 {
        let (v, lo, hi) = if self.log {
            (v.max(self.min).log10(), self.min.log10(), self.max.log10())
        } else {
            (v, self.min, self.max)
        };
        let f = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
        from + f.clamp(0.0, 1.0) * (to - from)
    }

    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let (a, b) = (
                self.min.log10().floor() as i32,
                self.max.log10().ceil() as i32,
            );
            (a..=b)
                .map(|e| 10f64.powi(e))
                .filter(|t| *t >= self.min && *t <= self.max)
                .collect()
        } else {
            (0..=5)
                .map(|i| self.min + (self.max - self.min) * f64::from(i) / 5.0)
                .collect()
        }
    }
}

/// CDF of the scored per-application cold-start % for every policy.
pub fn cdf_svg(report: &Report) -> String {
    let series: Vec<(String, Vec<f64>)> = report
        .policies
        .iter()
        .map(|p| (p.name.clone(), p.scored_cold_pct.clone()))
        .collect();
    cold_pct_cdf_svg("Per-application cold-start %, second half (CDF)", &series)
}

/// A CDF plot of per-application cold-start % for named series (each sorted ascending), as
/// [`cdf_svg`] draws B4's; the live replay draws its live and simulated policies with it.
pub fn cold_pct_cdf_svg(title: &str, series: &[(String, Vec<f64>)]) -> String {
    let series = series
        .iter()
        .map(|(name, sorted)| Series::line(name, cdf_points(sorted)))
        .collect();
    let panel = Panel {
        title: title.to_owned(),
        x: Axis::linear("cold starts per application (%)", 0.0, 100.0),
        y: Axis::linear("share of applications", 0.0, 1.0),
        series,
    };
    document(&[panel])
}

fn cdf_points(sorted: &[f64]) -> Vec<(f64, f64)> {
    let n = sorted.len().max(1) as f64;
    let mut points = vec![(0.0, 0.0)];
    for (i, &v) in sorted.iter().enumerate() {
        points.push((v, i as f64 / n));
        points.push((v, (i + 1) as f64 / n));
    }
    points.push((100.0, 1.0));
    points
}

/// Cold starts against wasted memory (second half): p75 of per-application cold-start % and
/// total cold starts, for Spark's budget curve, every policy, and every member of the hybrid
/// family (rings). Memory is on a log axis
/// spanning three decades below the largest value; a policy with less (the oracle's 0) is drawn
/// on the left edge.
pub fn tradeoff_svg(report: &Report) -> String {
    let max = report
        .curve
        .iter()
        .map(|c| c.scored.wasted_mb_min)
        .chain(
            report
                .policies
                .iter()
                .map(|p| p.scores.scored.wasted_mb_min),
        )
        .chain(
            report
                .family
                .iter()
                .map(|m| m.baseline_scored.wasted_mb_min),
        );
    let hi = max.fold(10.0, f64::max);
    let lo = hi / 1000.0;
    let curve = |f: fn(&crate::replay::PeriodScore) -> f64| {
        let pts = report
            .curve
            .iter()
            .filter(|c| c.scored.wasted_mb_min >= lo)
            .map(|c| (c.scored.wasted_mb_min, f(&c.scored)));
        Series::line("spark (budget sweep)", pts.collect())
    };
    let markers = |f: fn(&crate::replay::PeriodScore) -> f64| {
        let family = (!report.family.is_empty()).then(|| Series {
            name: "hybrid family".to_owned(),
            points: report
                .family
                .iter()
                .map(|m| {
                    (
                        m.baseline_scored.wasted_mb_min.max(lo),
                        f(&m.baseline_scored),
                    )
                })
                .collect(),
            style: Style::Ring,
        });
        report
            .policies
            .iter()
            .map(move |p| {
                let s = p.scores.scored;
                Series {
                    name: p.name.clone(),
                    points: vec![(s.wasted_mb_min.max(lo), f(&s))],
                    style: Style::Marker,
                }
            })
            .chain(family)
    };
    let memory = || Axis {
        label: "wasted memory, second half (MB-minutes)".into(),
        min: lo,
        max: hi,
        log: true,
    };
    let p75 = |s: &crate::replay::PeriodScore| s.p75;
    let colds = |s: &crate::replay::PeriodScore| s.cold_starts.max(1) as f64;
    let max_colds = report
        .curve
        .iter()
        .map(|c| c.scored.cold_starts)
        .max()
        .unwrap_or(1)
        .max(10) as f64;
    let top = Panel {
        title: "p75 of per-application cold-start % vs wasted memory".to_owned(),
        x: memory(),
        y: Axis::linear("p75 cold starts (%)", 0.0, 100.0),
        series: std::iter::once(curve(p75)).chain(markers(p75)).collect(),
    };
    let bottom = Panel {
        title: "Total cold starts vs wasted memory".to_owned(),
        x: memory(),
        y: Axis {
            label: "cold starts (log)".into(),
            min: 1.0,
            max: max_colds,
            log: true,
        },
        series: std::iter::once(curve(colds))
            .chain(markers(colds))
            .collect(),
    };
    document(&[top, bottom])
}

struct Panel {
    title: String,
    x: Axis,
    y: Axis,
    series: Vec<Series>,
}

fn document(panels: &[Panel]) -> String {
    let mut s = String::new();
    let total = H * panels.len() as f64;
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{total}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{total}" fill="white"/>"#);
    for (i, p) in panels.iter().enumerate() {
        let _ = writeln!(s, r#"<g transform="translate(0,{})">"#, H * i as f64);
        panel(&mut s, p);
        s.push_str("</g>\n");
    }
    s.push_str("</svg>\n");
    s
}

fn panel(s: &mut String, p: &Panel) {
    let (x, y) = (&p.x, &p.y);
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, H - BOTTOM, TOP);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="18" text-anchor="middle" font-size="13">{}</text>"#,
        (x0 + x1) / 2.0,
        esc(&p.title)
    );
    let _ = writeln!(
        s,
        r#"<path d="M{x0},{y1} V{y0} H{x1}" stroke="black" fill="none"/>"#
    );
    for t in x.ticks() {
        let px = x.map(t, x0, x1);
        let _ = writeln!(
            s,
            r#"<line x1="{px:.1}" y1="{y0}" x2="{px:.1}" y2="{}" stroke="black"/>"#,
            y0 + 4.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"#,
            y0 + 16.0,
            tick_label(t)
        );
    }
    for t in y.ticks() {
        let py = y.map(t, y0, y1);
        let _ = writeln!(
            s,
            r##"<line x1="{x0}" y1="{py:.1}" x2="{x1}" y2="{py:.1}" stroke="#ddd"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            x0 - 6.0,
            py + 4.0,
            tick_label(t)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (x0 + x1) / 2.0,
        H - 12.0,
        esc(&x.label)
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{0}" text-anchor="middle" transform="rotate(-90 16 {0})">{1}</text>"#,
        (y0 + y1) / 2.0,
        esc(&y.label)
    );
    for (i, ser) in p.series.iter().enumerate() {
        let color = color_for(&ser.name);
        draw_series(s, ser, color, x, y);
        let ly = TOP + 16.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{}" y="{}" width="12" height="3" fill="{color}"/>"#,
            x1 + 12.0,
            ly
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}">{}</text>"#,
            x1 + 28.0,
            ly + 5.0,
            esc(&ser.name)
        );
    }
}

/// The same colour for a policy in every plot.
fn color_for(name: &str) -> &'static str {
    match name {
        "fixed-10min" => "#1f77b4",
        "hybrid" => "#ff7f0e",
        "oracle" => "#2ca02c",
        "spark@hybrid" => "#d62728",
        "spark@fixed-10min" => "#9467bd",
        "spark (budget sweep)" => "#8c564b",
        "live spark" => "#17becf",
        "live fixed-10min" => "#bcbd22",
        "live hybrid" => "#393b79",
        "hybrid family" => "#e377c2",
        _ => "#7f7f7f",
    }
}

fn draw_series(s: &mut String, ser: &Series, color: &str, x: &Axis, y: &Axis) {
    let pts: Vec<(f64, f64)> = ser
        .points
        .iter()
        .map(|&(a, b)| (x.map(a, LEFT, W - RIGHT), y.map(b, H - BOTTOM, TOP)))
        .collect();
    match ser.style {
        Style::Line => {
            let path: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.5"/>"#,
                path.join(" ")
            );
        }
        Style::Marker => {
            for (a, b) in pts {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{a:.1}" cy="{b:.1}" r="4" fill="{color}"/>"#
                );
            }
        }
        Style::Ring => {
            for (a, b) in pts {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{a:.1}" cy="{b:.1}" r="5" fill="none" stroke="{color}" stroke-width="1.5"/>"#
                );
            }
        }
    }
}

fn tick_label(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e4 || v.abs() < 0.01) {
        format!("{v:.0e}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
