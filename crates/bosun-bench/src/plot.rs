//! Charts for the record, written as SVG next to `docs/benchmarks.md`: a title, axis labels
//! with units, tick values, and a legend naming every line. SVG text is drawn by whatever
//! shows the chart (a browser, GitHub), so no font is needed here.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 450.0;
/// Room for the title (top), the tick values and axis labels (left, bottom).
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
/// Line colours, in order: blue, orange, green, red, purple, brown.
const COLOURS: [&str; 6] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];
/// A step curve of more points than this is thinned (the file stays small, the shape the same).
const MAX_POINTS: usize = 2000;
/// At most this many intervals between tick values on an axis.
const MAX_TICKS: f64 = 7.0;

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A staircase (a cumulative count: objects converged over time).
    Step,
    /// Points joined by straight lines, each marked (when there are a few).
    Line,
    /// A dashed line: a reference, not a measurement.
    Reference,
}

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub style: Style,
}

/// A chart: lines on shared axes starting at zero.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

impl Chart {
    pub fn new(title: impl Into<String>, x_label: impl Into<String>, y_label: impl Into<String>) -> Chart {
        Chart { title: title.into(), x_label: x_label.into(), y_label: y_label.into(), series: Vec::new() }
    }

    /// Adds a line.
    pub fn line(mut self, name: impl Into<String>, points: Vec<(f64, f64)>, style: Style) -> Chart {
        self.series.push(Series { name: name.into(), points, style });
        self
    }

    /// The chart of objects converged over time: one staircase per curve (name, sorted
    /// seconds at which each object converged).
    pub fn convergence(title: impl Into<String>, curves: &[(String, Vec<f64>)]) -> Chart {
        let mut chart = Chart::new(title, "time since start (s)", "parents converged");
        for (name, times) in curves {
            let points = times.iter().enumerate().map(|(index, seconds)| (*seconds, (index + 1) as f64)).collect();
            chart = chart.line(name.clone(), points, Style::Step);
        }
        chart
    }

    /// Writes the chart to `<docs>/benchmarks/<name>.svg`; returns the path.
    pub fn write(&self, docs: &Path, name: &str) -> anyhow::Result<PathBuf> {
        let dir = docs.join("benchmarks");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.svg"));
        std::fs::write(&path, self.svg())?;
        Ok(path)
    }

    /// The chart as an SVG document.
    pub fn svg(&self) -> String {
        let points = self.series.iter().flat_map(|series| series.points.iter());
        let (x_max, y_max) = points.fold((0.0_f64, 0.0_f64), |(x, y), point| (x.max(point.0), y.max(point.1)));
        let (x_ticks, y_ticks) = (ticks(x_max), ticks(y_max));
        let (x_end, y_end) = (*x_ticks.last().unwrap_or(&1.0), *y_ticks.last().unwrap_or(&1.0));
        let (plot_width, plot_height) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let x_at = |x: f64| LEFT + x / x_end * plot_width;
        let y_at = |y: f64| TOP + plot_height - y / y_end * plot_height;

        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
             font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"{}\" y=\"28\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">{}</text>\n",
            WIDTH / 2.0,
            escape(&self.title)
        );
        // Grid lines and tick values.
        for &tick in &x_ticks {
            let x = x_at(tick);
            let _ = writeln!(svg, "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#e0e0e0\"/>", TOP + plot_height);
            let _ =
                writeln!(svg, "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>", TOP + plot_height + 18.0, number(tick));
        }
        for &tick in &y_ticks {
            let y = y_at(tick);
            let _ = writeln!(svg, "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e0e0e0\"/>", LEFT + plot_width);
            let _ = writeln!(svg, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>", LEFT - 8.0, y + 4.0, number(tick));
        }
        // Axes and their labels.
        let _ =
            writeln!(svg, "<path d=\"M{LEFT},{TOP} V{:.1} H{:.1}\" fill=\"none\" stroke=\"black\"/>", TOP + plot_height, LEFT + plot_width);
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            LEFT + plot_width / 2.0,
            HEIGHT - 15.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            svg,
            "<text transform=\"translate(20,{:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
            TOP + plot_height / 2.0,
            escape(&self.y_label)
        );
        // The lines.
        for (series, colour) in self.series.iter().zip(COLOURS.iter().cycle()) {
            let mut path = String::new();
            let thinned = thin(&series.points, series.style);
            for (index, &(x, y)) in thinned.iter().enumerate() {
                let command = if index == 0 { 'M' } else { 'L' };
                if series.style == Style::Step && index > 0 {
                    let _ = write!(path, "L{:.1},{:.1} ", x_at(x), y_at(thinned[index - 1].1));
                }
                let _ = write!(path, "{command}{:.1},{:.1} ", x_at(x), y_at(y));
            }
            let dash = if series.style == Style::Reference { " stroke-dasharray=\"6,4\"" } else { "" };
            let _ = writeln!(svg, "<path d=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>", path.trim_end());
            // Marks show where the measurements are, when there are few of them.
            if series.style == Style::Line && series.points.len() <= 40 {
                for &(x, y) in &series.points {
                    let _ = writeln!(svg, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{colour}\"/>", x_at(x), y_at(y));
                }
            }
        }
        // The legend, in the corner of the plot its lines cross least.
        let legend_width = 40.0 + 7.0 * self.series.iter().map(|series| series.name.chars().count()).max().unwrap_or(0) as f64;
        let legend_height = 8.0 + 18.0 * self.series.len() as f64;
        let drawn: Vec<Vec<(f64, f64)>> = self
            .series
            .iter()
            .map(|series| thin(&series.points, series.style).into_iter().map(|(x, y)| (x_at(x), y_at(y))).collect())
            .collect();
        let (left, top) = legend_corner(&drawn, legend_width, legend_height);
        let _ = writeln!(
            svg,
            "<rect x=\"{left:.1}\" y=\"{top:.1}\" width=\"{legend_width:.1}\" height=\"{legend_height:.1}\" fill=\"white\" fill-opacity=\"0.9\" stroke=\"#999\"/>"
        );
        for (index, (series, colour)) in self.series.iter().zip(COLOURS.iter().cycle()).enumerate() {
            let y = top + 12.0 + 18.0 * index as f64;
            let dash = if series.style == Style::Reference { " stroke-dasharray=\"6,4\"" } else { "" };
            let _ = writeln!(
                svg,
                "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>",
                left + 6.0,
                left + 30.0
            );
            let _ = writeln!(svg, "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>", left + 36.0, y + 4.0, escape(&series.name));
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// Evenly spaced round tick values (steps of 1, 2 or 5 × 10ⁿ) from 0 to at least `max`: the
/// smallest step that needs at most [`MAX_TICKS`] intervals, so the axis ends close to `max`.
fn ticks(max: f64) -> Vec<f64> {
    let max = if max > 0.0 { max } else { 1.0 };
    let intervals = |step: f64| (max / step - 1e-9).ceil().max(1.0);
    let magnitude = 10f64.powf((max / MAX_TICKS).log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|factor| factor * magnitude)
        .find(|step| intervals(*step) <= MAX_TICKS)
        .unwrap_or(magnitude * 10.0);
    (0..=intervals(step) as usize).map(|index| index as f64 * step).collect()
}

/// The top-left corner of a `width` × `height` legend: the first of the plot's corners (top
/// left, top right, bottom right, bottom left) that the fewest of the `lines` (in drawing
/// coordinates) pass through.
fn legend_corner(lines: &[Vec<(f64, f64)>], width: f64, height: f64) -> (f64, f64) {
    let (right, bottom) = (WIDTH - RIGHT - 10.0 - width, HEIGHT - BOTTOM - 10.0 - height);
    let corners = [(LEFT + 10.0, TOP + 10.0), (right, TOP + 10.0), (right, bottom), (LEFT + 10.0, bottom)];
    let crossings = |&(left, top): &(f64, f64)| {
        let inside = |(x, y): (f64, f64)| (left..=left + width).contains(&x) && (top..=top + height).contains(&y);
        // Each segment is looked at in 2-pixel steps, so a line through the box is seen even
        // where none of its points fall inside.
        let segments = lines.iter().flat_map(|line| line.windows(2).map(|pair| (pair[0], pair[1])));
        let points = segments.chain(lines.iter().filter_map(|line| line.first().map(|point| (*point, *point))));
        points
            .filter(|&((x0, y0), (x1, y1))| {
                let steps = ((x1 - x0).hypot(y1 - y0) / 2.0).ceil().max(1.0);
                (0..=steps as usize).any(|step| {
                    let at = step as f64 / steps;
                    inside((x0 + (x1 - x0) * at, y0 + (y1 - y0) * at))
                })
            })
            .count()
    };
    corners.into_iter().min_by_key(crossings).expect("four corners")
}

/// A tick value as people write it: `2500`, `0.5`, `30k`.
fn number(value: f64) -> String {
    if value >= 1000.0 && value % 1000.0 == 0.0 {
        format!("{}k", value / 1000.0)
    } else if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// A step curve with at most [`MAX_POINTS`] points: every k-th, and the last.
fn thin(points: &[(f64, f64)], style: Style) -> Vec<(f64, f64)> {
    if style != Style::Step || points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let every = points.len().div_ceil(MAX_POINTS);
    let mut thinned: Vec<(f64, f64)> = points.iter().step_by(every).copied().collect();
    if let Some(last) = points.last().filter(|last| thinned.last() != Some(last)) {
        thinned.push(*last);
    }
    thinned
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(ticks(233.17), vec![0.0, 50.0, 100.0, 150.0, 200.0, 250.0]);
        assert_eq!(ticks(30000.0), vec![0.0, 5000.0, 10000.0, 15000.0, 20000.0, 25000.0, 30000.0]);
        assert_eq!(ticks(0.0).last(), Some(&1.0));
        assert_eq!(ticks(30.03), vec![0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0], "the axis ends near its maximum");
        assert_eq!(number(30000.0), "30k");
        assert_eq!(number(2500.0), "2500");
        assert_eq!(number(5000.0), "5k");
        assert_eq!(number(0.2), "0.2");
    }

    #[test]
    fn the_legend_goes_where_no_line_is() {
        let (left, right, top, bottom) = (LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM);
        let rising = vec![(left, bottom), (right, top)];
        assert_eq!(legend_corner(&[rising], 100.0, 40.0), (LEFT + 10.0, TOP + 10.0), "a rising line leaves the top left free");
        let flat_high = vec![(left, top + 20.0), (right, top + 25.0)];
        assert_eq!(legend_corner(&[flat_high], 100.0, 40.0), (right - 10.0 - 100.0, bottom - 10.0 - 40.0), "a line along the top");
    }

    #[test]
    fn a_chart_has_its_title_labels_ticks_and_legend() {
        let chart = Chart::convergence("Fan-out <10 parents>", &[("bosun".into(), vec![0.5, 1.0, 2.0]), ("raw limit".into(), vec![1.0])])
            .line("reference", vec![(0.0, 0.0), (2.0, 3.0)], Style::Reference);
        let svg = chart.svg();
        for text in
            ["Fan-out &lt;10 parents&gt;", "time since start (s)", "parents converged", ">bosun<", ">raw limit<", ">reference<", ">2<"]
        {
            assert!(svg.contains(text), "{text} missing from {svg}");
        }
        assert_eq!(svg.matches("<path d=\"M").count(), 4, "an axis and three lines");
    }
}
