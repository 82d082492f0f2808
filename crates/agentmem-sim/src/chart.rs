//! Miss ratio against cache size, one line per policy, as SVG (plotters'
//! SVG backend only, so no font or bitmap libraries are built).

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::sim::SimResult;

const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Draw `results` (several policies at several sizes) to an SVG file at
/// `path`, with the cache-size axis in `unit_label` on a log scale.
pub fn draw(path: &Path, title: &str, unit_label: &str, results: &[SimResult]) -> Result<()> {
    let err = |e: String| Error::Chart {
        path: path.into(),
        reason: e,
    };
    if results.is_empty() {
        return Err(err("no results to draw".into()));
    }
    let min_x = results
        .iter()
        .map(|r| r.cache_size)
        .min()
        .unwrap_or(1)
        .max(1) as f64;
    let max_x = results.iter().map(|r| r.cache_size).max().unwrap_or(1) as f64;
    let max_x = if max_x <= min_x { min_x * 2.0 } else { max_x };
    let max_y = results.iter().map(|r| r.miss_ratio).fold(0.0, f64::max);
    let max_y = (max_y * 1.1).clamp(0.05, 1.0);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((min_x * 0.9..max_x * 1.1).log_scale(), 0.0..max_y)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(format!("cache size ({unit_label})"))
        .y_desc("miss ratio")
        .x_label_formatter(&|x| format_size(*x))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    let mut policies: Vec<&'static str> = Vec::new();
    for r in results {
        if !policies.contains(&r.policy) {
            policies.push(r.policy);
        }
    }
    for (i, p) in policies.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut pts: Vec<(f64, f64)> = results
            .iter()
            .filter(|r| r.policy == *p)
            .map(|r| (r.cache_size as f64, r.miss_ratio))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let style = if *p == "belady" {
            ShapeStyle::from(&BLACK).stroke_width(2)
        } else {
            color.stroke_width(2)
        };
        chart
            .draw_series(LineSeries::new(pts.clone(), style))
            .map_err(|e| err(e.to_string()))?
            .label(*p)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        chart
            .draw_series(
                pts.iter()
                    .map(|&(x, y)| Circle::new((x, y), 3, style.filled())),
            )
            .map_err(|e| err(e.to_string()))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

fn format_size(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.1}G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.0}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg_with_every_policy() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.svg");
        let mut rs = Vec::new();
        for (policy, base) in [("lru", 0.5), ("belady", 0.3)] {
            for (i, size) in [100u64, 1000, 10_000].iter().enumerate() {
                rs.push(SimResult {
                    policy,
                    cache_size: *size,
                    misses: 0,
                    miss_ratio: base / (i + 1) as f64,
                    byte_miss_ratio: 0.0,
                });
            }
        }
        draw(&p, "test", "objects", &rs).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("lru") && svg.contains("belady"));
        assert!(draw(&p, "t", "objects", &[]).is_err());
    }
}
