//! The convergence plot: parents converged over time, one curve per run, drawn on a raster and
//! written as a PNG next to `docs/benchmarks.md`. No text is drawn (no font is needed): the
//! report's caption gives the axes and the colours.

use std::path::{Path, PathBuf};

const WIDTH: usize = 800;
const HEIGHT: usize = 400;
const MARGIN: usize = 40;
/// Curve colours, in order: blue, grey, orange, green.
pub const COLOURS: [([u8; 3], &str); 4] =
    [([31, 119, 180], "blue"), ([127, 127, 127], "grey"), ([255, 127, 14], "orange"), ([44, 160, 44], "green")];

/// Draws `curves` (name, sorted seconds at which each object converged) into
/// `<docs>/benchmarks/<name>.png`; returns the path and the caption.
pub fn write(docs: &Path, name: &str, curves: &[(String, Vec<f64>)]) -> anyhow::Result<(PathBuf, String)> {
    let total = curves.iter().map(|(_, times)| times.len()).max().unwrap_or(0).max(1);
    let end = curves.iter().flat_map(|(_, times)| times.last().copied()).fold(0.0_f64, f64::max).max(0.001);
    let mut pixels = vec![255u8; WIDTH * HEIGHT * 3];
    let mut set = |x: usize, y: usize, colour: [u8; 3]| {
        if x < WIDTH && y < HEIGHT {
            let at = (y * WIDTH + x) * 3;
            pixels[at..at + 3].copy_from_slice(&colour);
        }
    };
    let (plot_width, plot_height) = (WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN);
    // Grid at every tenth, axes in black.
    for step in 0..=10 {
        let x = MARGIN + plot_width * step / 10;
        let y = MARGIN + plot_height * step / 10;
        let shade = if step == 0 { [0, 0, 0] } else { [225, 225, 225] };
        for offset in 0..plot_height {
            set(x, MARGIN + offset, if step == 0 { [0, 0, 0] } else { shade });
        }
        for offset in 0..plot_width {
            set(MARGIN + offset, y, if step == 10 { [0, 0, 0] } else { shade });
        }
    }
    for ((_, times), (colour, _)) in curves.iter().zip(COLOURS) {
        let mut previous = (MARGIN, MARGIN + plot_height);
        for (index, seconds) in times.iter().enumerate() {
            let x = MARGIN + ((seconds / end) * plot_width as f64).round() as usize;
            let y = MARGIN + plot_height - ((index + 1) * plot_height / total);
            // A step line: along, then up; two pixels thick.
            for px in previous.0.min(x)..=previous.0.max(x) {
                set(px, previous.1, colour);
                set(px, previous.1.saturating_sub(1), colour);
            }
            for py in y.min(previous.1)..=y.max(previous.1) {
                set(x, py, colour);
                set(x + 1, py, colour);
            }
            previous = (x, y);
        }
    }
    let dir = docs.join("benchmarks");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.png"));
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(std::fs::File::create(&path)?), WIDTH as u32, HEIGHT as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(&pixels)?;
    let legend: Vec<String> = curves.iter().zip(COLOURS).map(|((name, _), (_, colour))| format!("{colour}: {name}")).collect();
    let caption = format!(
        "objects converged over time; x: 0 to {end:.2} s (gridlines every {:.2} s), y: 0 to {total} (gridlines every {}); {}",
        end / 10.0,
        total / 10,
        legend.join(", ")
    );
    Ok((path, caption))
}
