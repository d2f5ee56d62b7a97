//! SVG charts (plotters, SVG backend only): the calibration curve of a run and the
//! per-subject accuracy of two runs.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{ExportError, Exporter};
use crate::score::compare::PairComparison;
use crate::score::summary::Summary;

const BLUE: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const ORANGE: RGBColor = RGBColor(0xff, 0x7f, 0x0e);

fn chart_error<E: std::fmt::Display>(e: E) -> ExportError {
    ExportError(format!("drawing the chart: {e}"))
}

/// Reliability diagram: mean confidence against accuracy per confidence bin, with the
/// diagonal of perfect calibration. Needs `summary.calibration`.
pub struct CalibrationChart;

impl Exporter<Summary> for CalibrationChart {
    fn serialize(&self, summary: &Summary) -> Result<Vec<u8>, ExportError> {
        let calibration = summary
            .calibration
            .as_ref()
            .ok_or_else(|| ExportError("no option probabilities in this run".into()))?;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (640, 520)).into_drawing_area();
            root.fill(&WHITE).map_err(chart_error)?;
            let title = format!(
                "Calibration: {} (ECE {:.3}, {} rows)",
                summary.run.run_id, calibration.ece, calibration.n
            );
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 18))
                .margin(16)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d(0f64..1f64, 0f64..1f64)
                .map_err(chart_error)?;
            chart
                .configure_mesh()
                .x_desc("confidence (largest option probability)")
                .y_desc("accuracy")
                .draw()
                .map_err(chart_error)?;
            chart
                .draw_series(LineSeries::new(
                    [(0.0, 0.0), (1.0, 1.0)],
                    BLACK.mix(0.4).stroke_width(1),
                ))
                .map_err(chart_error)?
                .label("perfect calibration")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.4)));
            let points: Vec<(f64, f64)> = calibration
                .bins
                .iter()
                .filter(|b| b.n > 0)
                .map(|b| (b.confidence, b.accuracy))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), BLUE.stroke_width(2)))
                .map_err(chart_error)?
                .label("this run")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 4, BLUE.filled())))
                .map_err(chart_error)?;
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.3))
                .draw()
                .map_err(chart_error)?;
            root.present().map_err(chart_error)?;
        }
        Ok(svg.into_bytes())
    }
}

/// Horizontal bars: accuracy of A and B per subject, in the comparison's order (largest
/// change first).
pub struct SubjectChart<'a> {
    pub baseline: &'a str,
}

/// Subjects drawn at most (the largest changes); the rest are in the Markdown and JSON.
pub const MAX_SUBJECTS_CHARTED: usize = 40;

impl Exporter<PairComparison> for SubjectChart<'_> {
    fn serialize(&self, pair: &PairComparison) -> Result<Vec<u8>, ExportError> {
        let subjects: Vec<_> = pair.subjects.iter().take(MAX_SUBJECTS_CHARTED).collect();
        let rows = subjects.len().max(1);
        let height = (120 + 28 * rows) as u32;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (860, height)).into_drawing_area();
            root.fill(&WHITE).map_err(chart_error)?;
            draw_subjects(&root, self.baseline, pair, &subjects, rows)?;
            root.present().map_err(chart_error)?;
        }
        Ok(svg.into_bytes())
    }
}

fn draw_subjects(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    baseline: &str,
    pair: &PairComparison,
    subjects: &[&crate::score::compare::SubjectDifference],
    rows: usize,
) -> Result<(), ExportError> {
    let title = format!(
        "Accuracy by subject: A = {baseline}, B = {}",
        pair.candidate.name
    );
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .margin_right(150)
        .x_label_area_size(36)
        .y_label_area_size(260)
        .build_cartesian_2d(0f64..1f64, 0f64..rows as f64)
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_max_light_lines(1)
        .y_labels(0)
        .y_label_formatter(&|_| String::new())
        .x_desc("accuracy")
        .draw()
        .map_err(chart_error)?;
    // Subject i takes the band [rows - 1 - i, rows - i], so the first (largest change) is at
    // the top; A fills the upper half of the band, B the lower half. Bars and names are placed
    // in pixels (the root area starts at the backend's origin, so backend coordinates are
    // root coordinates).
    let label_style = ("sans-serif", 12)
        .into_font()
        .into_text_style(root)
        .pos(Pos::new(HPos::Right, VPos::Center));
    for (i, s) in subjects.iter().enumerate() {
        let band_top = (rows - i) as f64;
        let band_bottom = band_top - 1.0;
        let y_top = chart.backend_coord(&(0.0, band_top)).1;
        let y_bottom = chart.backend_coord(&(0.0, band_bottom)).1;
        let middle = (y_top + y_bottom) / 2;
        let x_of = |value: f64| chart.backend_coord(&(value, band_top)).0;
        let x0 = x_of(0.0);
        let a = Rectangle::new(
            [(x0, y_top + 3), (x_of(s.accuracy_a), middle)],
            BLUE.filled(),
        );
        let b = Rectangle::new(
            [(x0, middle), (x_of(s.accuracy_b), y_bottom - 3)],
            ORANGE.filled(),
        );
        root.draw(&a).map_err(chart_error)?;
        root.draw(&b).map_err(chart_error)?;
        root.draw(&Text::new(
            s.subject.clone(),
            (x0 - 8, middle),
            label_style.clone(),
        ))
        .map_err(chart_error)?;
    }
    // Legend, drawn in pixels at the top right of the root area.
    let (width, _) = root.dim_in_pixel();
    let x = width as i32 - 140;
    for (k, (label, color)) in [("A (baseline)", BLUE), ("B", ORANGE)].iter().enumerate() {
        let y = 40 + 18 * k as i32;
        root.draw(&Rectangle::new([(x, y), (x + 12, y + 12)], color.filled()))
            .map_err(chart_error)?;
        root.draw(&Text::new(*label, (x + 18, y), ("sans-serif", 13)))
            .map_err(chart_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::compare::{
        ErrorBars, Flipped, PairedRows, RunLabel, SubjectDifference, UsageDifference,
    };
    use crate::score::stats;

    fn pair(subjects: Vec<SubjectDifference>) -> PairComparison {
        PairComparison {
            candidate: RunLabel {
                name: "b".into(),
                path: "b".into(),
                model: None,
                program: None,
                dataset_sha256: None,
            },
            rows: PairedRows {
                shared: 1,
                only_a: 0,
                only_b: 0,
                compared: 1,
            },
            accuracy_a: stats::proportion(1, 1),
            accuracy_b: stats::proportion(0, 1),
            difference: -1.0,
            ci95: [-1.0, -1.0],
            mcnemar_p: 1.0,
            error_bars: ErrorBars {
                se: 0.0,
                se_clustered: None,
                se_method: "unclustered (1 subject)".into(),
                clusters: 1,
                ci95_clustered: [-1.0, -1.0],
                minimum_detectable_effect: 0.0,
                power: stats::POWER,
            },
            subjects,
            flipped: Flipped {
                right_to_wrong: vec![],
                wrong_to_right: vec![],
            },
            usage: UsageDifference {
                tokens_a: 0,
                tokens_b: 0,
                cost_a: None,
                cost_b: None,
                currency: None,
                latency_a: None,
                latency_b: None,
            },
            gate: None,
        }
    }

    #[test]
    fn subject_chart_with_one_subject_or_none() {
        let one = pair(vec![SubjectDifference {
            subject: "anatomy".into(),
            n: 1,
            accuracy_a: 1.0,
            accuracy_b: 0.0,
            difference: -1.0,
            ci95: [-1.0, -1.0],
        }]);
        let svg = SubjectChart { baseline: "a" }
            .serialize(&one)
            .expect("chart");
        let svg = String::from_utf8(svg).expect("utf-8");
        assert!(svg.contains("anatomy"), "{svg}");
        let none = pair(vec![]);
        assert!(SubjectChart { baseline: "a" }.serialize(&none).is_ok());
    }
}
