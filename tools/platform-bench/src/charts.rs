//! The PNG charts of `bench-results/` (plotters, bitmap backend): warm-path rps and p99 per
//! row, cold-start p50/p95 per method (one panel per function), and the scale reaction's
//! replicas over time.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::cold::Set;
use crate::scale::Outcome;
use crate::stats::pct;
use crate::warm::Row;

/// The font scripts/deps.sh installs (fonts-dejavu-core).
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FAMILY: &str = "sans-serif";

const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const RED: RGBColor = RGBColor(214, 39, 40);
const GREY: RGBColor = RGBColor(90, 90, 90);

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Registers the chart font (once per process).
pub fn load_font() -> Result<(), String> {
    let bytes = std::fs::read(FONT).map_err(|e| {
        format!("cannot read the chart font {FONT} ({e}); `make deps` installs fonts-dejavu-core")
    })?;
    // plotters keeps fonts for the whole process: the one font is leaked once, on purpose.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font(FAMILY, FontStyle::Normal, bytes)
        .map_err(|_| format!("{FONT} is not a usable font"))
}

/// Axis tick text: no trailing `.0`, no decimals on large values.
fn tick(v: &f64) -> String {
    if v.abs() >= 100.0 || v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// One bar chart panel: categories along x, one bar per series in each.
struct Bars<'a> {
    title: String,
    y_desc: &'a str,
    labels: Vec<String>,
    series: Vec<(&'a str, RGBColor, Vec<f64>)>,
    /// Decimals of the value printed above each bar.
    decimals: usize,
}

fn bars(area: &Area<'_>, b: &Bars<'_>) -> Result<(), String> {
    let n = b.labels.len().max(1);
    let k = b.series.len().max(1);
    let top = b
        .series
        .iter()
        .flat_map(|s| s.2.iter().copied())
        .fold(0.0_f64, f64::max);
    let y_max = if top > 0.0 { top * 1.18 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(&b.title, (FAMILY, 18))
        .margin(14)
        .x_label_area_size(34)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5_f64..(n as f64 - 0.5), 0.0..y_max)
        .map_err(err)?;
    let labels = b.labels.clone();
    let fmt_x = move |x: &f64| -> String {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(RGBColor(235, 235, 235))
        .x_labels(n)
        .x_label_formatter(&fmt_x)
        .y_label_formatter(&tick)
        .y_desc(b.y_desc)
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 14))
        .draw()
        .map_err(err)?;
    let width = 0.8 / k as f64;
    for (j, (name, color, values)) in b.series.iter().enumerate() {
        let color = *color;
        let rects = values.iter().enumerate().map(move |(i, v)| {
            let x0 = i as f64 - 0.4 + j as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width * 0.92, *v)], color.filled())
        });
        let anno = chart.draw_series(rects).map_err(err)?;
        if k > 1 {
            anno.label(*name).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
            });
        }
        let decimals = b.decimals;
        let texts = values.iter().enumerate().map(move |(i, v)| {
            let x0 = i as f64 - 0.4 + j as f64 * width;
            Text::new(
                format!("{v:.decimals$}"),
                (x0, *v + y_max * 0.045),
                (FAMILY, 11).into_font().color(&GREY),
            )
        });
        chart.draw_series(texts).map_err(err)?;
    }
    if k > 1 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .label_font((FAMILY, 13))
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

/// `warm_path.png`: per function, rps (top) and p50/p99 latency (bottom) per row.
pub fn warm(path: &Path, rows: &[Row], functions: &[String]) -> Result<(), String> {
    let cols = functions.len().max(1);
    let root = BitMapBackend::new(path, (620 * cols as u32, 820)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically(410);
    let tops = top.split_evenly((1, cols));
    let bottoms = bottom.split_evenly((1, cols));
    for (i, f) in functions.iter().enumerate() {
        let mine: Vec<&Row> = rows.iter().filter(|r| &r.function == f).collect();
        let labels: Vec<String> = mine.iter().map(|r| format!("({})", r.key)).collect();
        bars(
            &tops[i],
            &Bars {
                title: format!("`{f}`: requests/s per row (same wrk run)"),
                y_desc: "requests/s",
                labels: labels.clone(),
                series: vec![("rps", BLUE, mine.iter().map(|r| r.m.rps).collect())],
                decimals: 0,
            },
        )?;
        bars(
            &bottoms[i],
            &Bars {
                title: format!("`{f}`: latency per row"),
                y_desc: "ms",
                labels,
                series: vec![
                    ("p50", GREEN, mine.iter().map(|r| r.m.p50_ms).collect()),
                    ("p99", ORANGE, mine.iter().map(|r| r.m.p99_ms).collect()),
                ],
                decimals: 2,
            },
        )?;
    }
    root.present().map_err(err)
}

/// Short names for the cold-start methods (the chart's x labels).
fn short(key: &str) -> &str {
    match key {
        "sluice" => "Sluice",
        "sluice-pool" => "Sluice+pool",
        "create-start" => "create+start",
        "create-start-ready" => "c+s→ready",
        "run" => "run→ready",
        "unpause" => "unpause",
        "unpause-ready" => "unpause→ready",
        other => other,
    }
}

/// `cold_start.png`: p50 and p95 per method, one panel per measured function (stacked).
pub fn cold(path: &Path, sets: &[Set]) -> Result<(), String> {
    let measured: Vec<&Set> = sets.iter().filter(|s| s.methods.is_ok()).collect();
    let rows = measured.len().max(1);
    let root = BitMapBackend::new(path, (1100, 480 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let panels = root.split_evenly((rows, 1));
    for (set, area) in measured.iter().zip(panels.iter()) {
        let methods = set.methods.as_deref().unwrap_or_default();
        let p = |q: f64| -> Vec<f64> {
            methods
                .iter()
                .map(|m| pct(&m.samples_ms, q).unwrap_or(0.0))
                .collect()
        };
        bars(
            area,
            &Bars {
                title: format!(
                    "Cold start of `{}` ({}): p50 and p95 per method (ms)",
                    set.function, set.kind
                ),
                y_desc: "ms",
                labels: methods.iter().map(|m| short(m.key).to_string()).collect(),
                series: vec![("p50", BLUE, p(0.5)), ("p95", ORANGE, p(0.95))],
                decimals: 1,
            },
        )?;
    }
    root.present().map_err(err)
}

/// `scale_reaction.png`: replicas over time (ready and desired from the API, distinct
/// replicas answering per second) and the calls' latency by the second they were sent.
pub fn scale(path: &Path, o: &Outcome) -> Result<(), String> {
    let root = BitMapBackend::new(path, (1100, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically(420);
    let end = o
        .calls
        .iter()
        .map(|c| c.done_s)
        .fold(o.settings.duration.as_secs_f64(), f64::max)
        .ceil();
    let y_max = o
        .polls
        .iter()
        .map(|p| p.ready.max(p.desired))
        .max()
        .unwrap_or(0)
        .max(3) as f64
        + 1.0;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!(
                "Scale reaction: step to {} calls/s of sleep?ms={} at t = 0",
                o.settings.rate, o.settings.sleep_ms
            ),
            (FAMILY, 18),
        )
        .margin(14)
        .x_label_area_size(34)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..end, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(235, 235, 235))
        .y_labels(y_max as usize + 1)
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .y_desc("replicas")
        .x_desc("time (s)")
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 14))
        .draw()
        .map_err(err)?;
    let step = |pick: &dyn Fn(&crate::scale::Poll) -> u64| -> Vec<(f64, f64)> {
        let mut pts = Vec::new();
        let mut last: Option<f64> = None;
        for p in &o.polls {
            let v = pick(p) as f64;
            if let Some(l) = last {
                pts.push((p.t_s, l));
            }
            pts.push((p.t_s, v));
            last = Some(v);
        }
        pts
    };
    chart
        .draw_series(LineSeries::new(step(&|p| p.desired), RED.stroke_width(2)))
        .map_err(err)?
        .label("desired (API)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], RED.stroke_width(3)));
    chart
        .draw_series(LineSeries::new(step(&|p| p.ready), BLUE.stroke_width(3)))
        .map_err(err)?
        .label("ready (API)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], BLUE.stroke_width(3)));
    let serving: Vec<(f64, f64)> = o
        .serving_per_second()
        .iter()
        .enumerate()
        .flat_map(|(i, n)| [(i as f64, *n as f64), (i as f64 + 1.0, *n as f64)])
        .collect();
    chart
        .draw_series(LineSeries::new(serving, GREEN.stroke_width(2)))
        .map_err(err)?
        .label("replicas answering (per second)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], GREEN.stroke_width(3)));
    for (i, (_, t)) in o.first_seen().iter().enumerate() {
        let y = i as f64 + 1.0;
        chart
            .draw_series(std::iter::once(Circle::new((*t, y), 5, GREY.filled())))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("#{} {:.2} s", i + 1, t),
                (*t + end * 0.01, y + 0.15),
                (FAMILY, 12).into_font(),
            )))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .label_font((FAMILY, 13))
        .draw()
        .map_err(err)?;

    // Latency of the calls, by the second they were sent: median and max.
    let secs = end as usize;
    let mut by_sec: Vec<Vec<f64>> = vec![Vec::new(); secs.max(1)];
    let mut errors: Vec<(f64, f64)> = Vec::new();
    for c in &o.calls {
        let lat = (c.done_s - c.sent_s) * 1000.0;
        if c.status == Some(200) {
            if let Some(v) = by_sec.get_mut(c.sent_s as usize) {
                v.push(lat);
            }
        } else {
            errors.push((c.sent_s, lat));
        }
    }
    let series = |q: f64| -> Vec<(f64, f64)> {
        by_sec
            .iter()
            .enumerate()
            .filter_map(|(i, v)| pct(v, q).map(|p| (i as f64 + 0.5, p)))
            .collect()
    };
    let (p50, pmax) = (series(0.5), series(1.0));
    let l_max = pmax
        .iter()
        .map(|p| p.1)
        .chain(errors.iter().map(|e| e.1))
        .fold(0.0_f64, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(&bottom)
        .caption(
            "Latency of the step's calls, by the second they were sent",
            (FAMILY, 16),
        )
        .margin(14)
        .x_label_area_size(34)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end, 0.0..l_max.max(1.0))
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(235, 235, 235))
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .y_desc("ms")
        .x_desc("time (s)")
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 14))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(pmax, ORANGE.stroke_width(2)))
        .map_err(err)?
        .label("max")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], ORANGE.stroke_width(3)));
    chart
        .draw_series(LineSeries::new(p50, BLUE.stroke_width(2)))
        .map_err(err)?
        .label("median")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], BLUE.stroke_width(3)));
    if !errors.is_empty() {
        chart
            .draw_series(
                errors
                    .iter()
                    .map(|p| Cross::new(*p, 5, RED.stroke_width(2))),
            )
            .map_err(err)?
            .label("error")
            .legend(|(x, y)| Cross::new((x + 10, y), 5, RED.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .label_font((FAMILY, 13))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}
