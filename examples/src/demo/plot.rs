//! The picture of a run (`--plot PATH`): the p99 latency and the share
//! of useful answers per second for both sides, the fault phases shaded.
//!
//! Drawn with `plotters` into an RGB buffer (its bitmap backend, no image
//! encoder) and written as PNG with the `png` crate. Text needs a font
//! and the demo must run on a machine with none installed, so plotters
//! renders with `ab_glyph` from DejaVu Sans, which the `dejavu` crate
//! embeds (Bitstream Vera / public-domain licence).

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::report::Summary;

/// The picture's size in pixels.
pub const SIZE: (u32, u32) = (1200, 860);

const PROTECTED: RGBColor = RGBColor(31, 119, 180);
const UNPROTECTED: RGBColor = RGBColor(40, 40, 40);

type DrawError = Box<dyn std::error::Error + Send + Sync>;

fn register_font() -> Result<(), DrawError> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            let bytes = match style {
                FontStyle::Bold => dejavu::sans::bold(),
                _ => dejavu::sans::regular(),
            };
            if plotters::style::register_font("sans-serif", style, bytes).is_err() {
                result = Err("the embedded font could not be read".into());
            }
        }
    });
    result
}

/// The shade of a phase, by its name.
fn shade(name: &str) -> Option<RGBAColor> {
    match name {
        "latency spike" => Some(RGBColor(240, 200, 40).mix(0.25)),
        "outage" => Some(RGBColor(220, 50, 50).mix(0.20)),
        "rate limited" => Some(RGBColor(240, 140, 30).mix(0.22)),
        "recovery" => Some(RGBColor(60, 170, 80).mix(0.12)),
        _ => None,
    }
}

/// Draws `summary` to a PNG at `path`.
///
/// # Errors
///
/// When drawing fails or the file cannot be written.
pub fn draw(summary: &Summary, path: &Path) -> Result<(), DrawError> {
    register_font()?;
    let (w, h) = SIZE;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let title = format!(
            "battlement demo: {} req/s per side, {} s, seed {}",
            summary.config.rps,
            summary.config.duration_ms as f64 / 1000.0,
            summary.config.seed
        );
        let body = root.titled(
            &title,
            ("sans-serif", 26).into_font().style(FontStyle::Bold),
        )?;
        let (top, bottom) = body.split_vertically(h * 52 / 100);
        latency(summary, &top)?;
        answered(summary, &bottom)?;
        root.present()?;
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut png = png::Encoder::new(file, w, h);
    png.set_color(png::ColorType::Rgb);
    png.set_depth(png::BitDepth::Eight);
    let mut writer = png.write_header()?;
    writer.write_image_data(&buf)?;
    writer.finish()?;
    Ok(())
}

fn seconds(summary: &Summary) -> f64 {
    (summary.config.duration_ms as f64 / 1000.0).max(1.0)
}

fn phases<DB: DrawingBackend>(
    summary: &Summary,
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, impl Ranged<ValueType = f64>>>,
    (lo, hi): (f64, f64),
    labels: bool,
) -> Result<(), DrawError>
where
    DB::ErrorType: 'static,
{
    for p in &summary.schedule {
        let (x0, x1) = (p.start_ms as f64 / 1000.0, p.end_ms as f64 / 1000.0);
        if let Some(color) = shade(&p.name) {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x0, lo), (x1, hi)],
                    color.filled(),
                )))
                .map_err(|e| e.to_string())?;
        }
        if labels {
            chart
                .draw_series(std::iter::once(Text::new(
                    p.name.clone(),
                    (x0 + 0.1, hi),
                    ("sans-serif", 15).into_font().color(&BLACK.mix(0.7)),
                )))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

type Pick = fn(&super::report::Second) -> (u64, f64);

fn latency<DB: DrawingBackend>(
    summary: &Summary,
    area: &DrawingArea<DB, Shift>,
) -> Result<(), DrawError>
where
    DB::ErrorType: 'static,
{
    let top = summary
        .timeline
        .iter()
        .flat_map(|s| [s.protected.p99_ms, s.unprotected.p99_ms])
        .fold(100.0f64, f64::max)
        * 8.0;
    let (lo, hi) = (0.5f64, top);
    let chart = ChartBuilder::on(area)
        .caption("p99 latency per second (ms, log scale)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..seconds(summary), (lo..hi).log_scale())
        .map_err(|e| e.to_string())?;
    let lines: [(&str, RGBColor, Pick); 2] = [
        ("protected (Policy::http)", PROTECTED, |s| {
            (s.protected.sent, s.protected.p99_ms)
        }),
        ("unprotected (plain client)", UNPROTECTED, |s| {
            (s.unprotected.sent, s.unprotected.p99_ms)
        }),
    ];
    let panel = Panel {
        range: (lo, hi),
        y_label: |v| format!("{v:.0}"),
        phase_names: true,
        // Below the phases' names, in the headroom above the lines.
        legend: SeriesLabelPosition::Coordinate(8, 26),
    };
    panel.draw(summary, chart, lines)
}

fn answered<DB: DrawingBackend>(
    summary: &Summary,
    area: &DrawingArea<DB, Shift>,
) -> Result<(), DrawError>
where
    DB::ErrorType: 'static,
{
    let (lo, hi) = (0f64, 105f64);
    let chart = ChartBuilder::on(area)
        .caption(
            "useful answers per second (% of requests answered 2xx, fresh or by fallback)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..seconds(summary), lo..hi)
        .map_err(|e| e.to_string())?;
    let lines: [(&str, RGBColor, Pick); 2] = [
        ("protected", PROTECTED, |s| {
            (s.protected.sent, s.protected.answered_rate * 100.0)
        }),
        ("unprotected", UNPROTECTED, |s| {
            (s.unprotected.sent, s.unprotected.answered_rate * 100.0)
        }),
    ];
    let panel = Panel {
        range: (lo, hi),
        y_label: |v| format!("{v:.0}%"),
        phase_names: false,
        legend: SeriesLabelPosition::LowerLeft,
    };
    panel.draw(summary, chart, lines)
}

/// What differs between the two panels once their axes are built.
struct Panel {
    range: (f64, f64),
    y_label: fn(&f64) -> String,
    phase_names: bool,
    legend: SeriesLabelPosition,
}

impl Panel {
    /// The mesh, the shaded phases, one line per side (seconds without
    /// requests left out) and the legend.
    fn draw<'a, DB, Y>(
        self,
        summary: &Summary,
        mut chart: ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
        lines: [(&str, RGBColor, Pick); 2],
    ) -> Result<(), DrawError>
    where
        DB: DrawingBackend + 'a,
        DB::ErrorType: 'static,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_label_formatter(&self.y_label)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| e.to_string())?;
        phases(summary, &mut chart, self.range, self.phase_names)?;
        let floor = self.range.0;
        for (name, color, get) in lines {
            let points = summary
                .timeline
                .iter()
                .filter(|s| get(s).0 > 0)
                .map(|s| (s.second as f64 + 0.5, get(s).1.max(floor)));
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(3)))
                .map_err(|e| e.to_string())?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 24, y)], color.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .position(self.legend)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 16))
            .draw()
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}
