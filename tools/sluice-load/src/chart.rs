//! `load.png`: three stacked panels sharing the time axis — requests/s (target, sent, ok),
//! latency (p99 and p50, ms) and replicas (ready, desired) — drawn with plotters' bitmap
//! backend.
//!
//! Text needs a TrueType font, loaded at run time (see [`load_font`]); without one the
//! chart is drawn with its lines and axes but no text.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::profile::Profile;
use crate::stats::{Replicas, Second};

/// Where fonts usually are: Debian's `fonts-dejavu-core` first, then other distributions'
/// DejaVu, Liberation, FreeFont and Noto, then macOS.
pub const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
];

/// The family name fonts are registered under and drawn with.
const FAMILY: &str = "sans-serif";

/// Registers one font file for the chart's text.
fn register(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // plotters keeps fonts for the whole process; the one font is leaked once, on purpose.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font(FAMILY, FontStyle::Normal, bytes)
        .map_err(|_| format!("{} is not a TrueType/OpenType font", path.display()))
}

/// What [`load_font`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FontChoice {
    /// Text is drawn with this font.
    Loaded(PathBuf),
    /// No text (`--font none`, or `auto` found nothing).
    NoText,
}

/// Loads the chart font for `--font`: `none`, `auto` (the first of [`FONT_CANDIDATES`]
/// that loads) or a path (an error when it does not load).
pub fn load_font(choice: &str) -> Result<FontChoice, String> {
    match choice {
        "none" => Ok(FontChoice::NoText),
        "auto" => Ok(FONT_CANDIDATES
            .iter()
            .map(Path::new)
            .find(|p| p.is_file() && register(p).is_ok())
            .map(|p| FontChoice::Loaded(p.to_path_buf()))
            .unwrap_or(FontChoice::NoText)),
        path => {
            let p = Path::new(path);
            register(p)?;
            Ok(FontChoice::Loaded(p.to_path_buf()))
        }
    }
}

/// Splits a series at missing values so a gap is drawn as a gap.
fn segments(points: impl IntoIterator<Item = (f64, Option<f64>)>) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    for (x, y) in points {
        match y {
            Some(y) => cur.push((x, y)),
            None if !cur.is_empty() => out.push(std::mem::take(&mut cur)),
            None => {}
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A value held for the whole second `t..t+1` (step line), for counts that change at
/// second boundaries.
fn steps(values: impl IntoIterator<Item = Option<f64>>) -> Vec<(f64, Option<f64>)> {
    let mut out = Vec::new();
    for (t, v) in values.into_iter().enumerate() {
        out.push((t as f64, v));
        out.push((t as f64 + 1.0, v));
    }
    out
}

/// A value at the middle of its second.
fn centred(values: impl IntoIterator<Item = Option<f64>>) -> Vec<(f64, Option<f64>)> {
    values
        .into_iter()
        .enumerate()
        .map(|(t, v)| (t as f64 + 0.5, v))
        .collect()
}

/// One line of a panel.
struct Line {
    label: &'static str,
    color: RGBColor,
    width: u32,
    dashed: bool,
    points: Vec<(f64, Option<f64>)>,
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// One of the three panels.
struct Panel<'a> {
    y_desc: &'a str,
    lines: &'a [Line],
    /// Whole-number values (replicas): y range and ticks on integers.
    integer: bool,
    /// Whether this panel carries the shared "time (s)" axis title (the bottom one).
    x_desc: bool,
}

/// Axis tick text: no trailing `.0`.
fn tick(v: &f64) -> String {
    crate::report::num(*v)
}

fn panel(area: &Area<'_>, x_max: f64, p: &Panel<'_>, text: bool) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let lines = p.lines;
    let y_top = lines
        .iter()
        .flat_map(|l| l.points.iter().filter_map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let y_max = if p.integer {
        y_top.ceil() + 1.0
    } else if y_top > 0.0 {
        y_top * 1.15
    } else {
        1.0
    };
    let mut builder = ChartBuilder::on(area);
    builder.margin(12);
    if text {
        builder.x_label_area_size(36).y_label_area_size(64);
    } else {
        builder.x_label_area_size(8).y_label_area_size(8);
    }
    let mut chart = builder
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(e)?;
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(RGBColor(235, 235, 235));
    if text {
        mesh.y_desc(p.y_desc)
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 15))
            .x_label_formatter(&tick)
            .y_label_formatter(&tick);
        if p.x_desc {
            mesh.x_desc("time (s)");
        }
        if p.integer && y_max <= 12.0 {
            mesh.y_labels(y_max as usize + 1);
        }
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(e)?;
    if !text {
        // Without a font plotters draws no ticks or grid: frame the panel and draw a
        // plain grid (seconds across, quarters up) so the lines can still be read.
        let grid = RGBColor(225, 225, 225).stroke_width(1);
        let every = (x_max / 20.0).ceil().max(1.0);
        let verticals = (1..)
            .map(|i| i as f64 * every)
            .take_while(|x| *x < x_max)
            .map(|x| PathElement::new(vec![(x, 0.0), (x, y_max)], grid));
        let horizontals = (1..4)
            .map(|i| y_max * i as f64 / 4.0)
            .map(|y| PathElement::new(vec![(0.0, y), (x_max, y)], grid));
        chart.draw_series(verticals.chain(horizontals)).map_err(e)?;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, 0.0), (x_max, y_max)],
                RGBColor(120, 120, 120).stroke_width(1),
            )))
            .map_err(e)?;
    }
    for line in lines {
        let style = line.color.stroke_width(line.width);
        let mut first = true;
        let mut segs = segments(line.points.iter().copied());
        if segs.is_empty() {
            // Keep the legend entry even when the series has no value at all.
            segs.push(Vec::new());
        }
        for seg in segs {
            let anno = if line.dashed {
                chart
                    .draw_series(DashedLineSeries::new(seg, 8, 5, style))
                    .map_err(e)?
            } else {
                chart.draw_series(LineSeries::new(seg, style)).map_err(e)?
            };
            if first {
                let color = line.color;
                anno.label(line.label).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3))
                });
                first = false;
            }
        }
    }
    if text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .label_font((FAMILY, 14))
            .draw()
            .map_err(e)?;
    }
    Ok(())
}

const BLUE_: RGBColor = RGBColor(31, 119, 180);
const GREEN_: RGBColor = RGBColor(44, 160, 44);
const ORANGE_: RGBColor = RGBColor(255, 127, 14);
const RED_: RGBColor = RGBColor(214, 39, 40);
const GREY_: RGBColor = RGBColor(90, 90, 90);

/// The profile's rate at many instants of `0..until` in a run of `total` seconds, so steps
/// and ramps show their shape.
fn target_curve(profile: &Profile, total: f64, until: f64) -> Vec<(f64, Option<f64>)> {
    let n = 600;
    (0..=n)
        .map(|i| {
            let t = until * i as f64 / n as f64;
            (t, Some(profile.rate_at(t, total)))
        })
        .collect()
}

/// Draws the chart of `rows` into `path` (PNG, 1200×900): the target line is `profile`'s
/// rate over `total` seconds. `title` is shown when `text`.
pub fn draw(
    path: &Path,
    rows: &[Second],
    profile: &Profile,
    total: f64,
    title: &str,
    text: bool,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let root = BitMapBackend::new(path, (1200, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let body = if text {
        root.titled(title, (FAMILY, 20)).map_err(e)?
    } else {
        root.clone()
    };
    let panels = body.split_evenly((3, 1));
    let x_max = rows.len().max(1) as f64;
    let replicas = |f: fn(u64, u64) -> u64| -> Vec<Option<f64>> {
        rows.iter()
            .map(|s| match s.replicas {
                Some(Replicas::Seen { ready, desired }) => Some(f(ready, desired) as f64),
                _ => None,
            })
            .collect()
    };
    let requests = [
        Line {
            label: "ok",
            color: GREEN_,
            width: 3,
            dashed: false,
            points: steps(rows.iter().map(|s| Some(s.ok as f64))),
        },
        Line {
            label: "sent",
            color: BLUE_,
            width: 2,
            dashed: false,
            points: steps(rows.iter().map(|s| Some(s.sent as f64))),
        },
        Line {
            label: "target",
            color: GREY_,
            width: 2,
            dashed: true,
            points: target_curve(profile, total, total.min(x_max)),
        },
    ];
    let latency = [
        Line {
            label: "p99",
            color: RED_,
            width: 2,
            dashed: false,
            points: centred(rows.iter().map(|s| s.percentile_ms(99.0))),
        },
        Line {
            label: "p50",
            color: BLUE_,
            width: 1,
            dashed: false,
            points: centred(rows.iter().map(|s| s.percentile_ms(50.0))),
        },
    ];
    let replica_lines = [
        Line {
            label: "ready",
            color: GREEN_,
            width: 3,
            dashed: false,
            points: steps(replicas(|ready, _| ready)),
        },
        Line {
            label: "desired",
            color: ORANGE_,
            width: 2,
            dashed: true,
            points: steps(replicas(|_, desired| desired)),
        },
    ];
    let specs = [
        Panel {
            y_desc: "requests/s",
            lines: &requests,
            integer: false,
            x_desc: false,
        },
        Panel {
            y_desc: "latency (ms)",
            lines: &latency,
            integer: false,
            x_desc: false,
        },
        Panel {
            y_desc: "replicas",
            lines: &replica_lines,
            integer: true,
            x_desc: true,
        },
    ];
    for (area, spec) in panels.iter().zip(&specs) {
        panel(area, x_max, spec, text)?;
    }
    root.present().map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_split_series() {
        let segs = segments([
            (0.0, Some(1.0)),
            (1.0, None),
            (2.0, Some(2.0)),
            (3.0, Some(3.0)),
            (4.0, None),
        ]);
        assert_eq!(segs, vec![vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]]);
        assert!(segments([(0.0, None)]).is_empty());
    }

    #[test]
    fn step_and_centred_points() {
        assert_eq!(
            steps([Some(1.0), None]),
            vec![(0.0, Some(1.0)), (1.0, Some(1.0)), (1.0, None), (2.0, None)]
        );
        assert_eq!(centred([Some(4.0)]), vec![(0.5, Some(4.0))]);
    }
}
