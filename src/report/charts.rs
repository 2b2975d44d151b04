//! The HTML report's charts, drawn with plotters into SVG strings that are inlined in the page.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const BLUE: RGBColor = RGBColor(59, 111, 182);
const ORANGE: RGBColor = RGBColor(221, 132, 32);
const GRID: RGBColor = RGBColor(225, 228, 232);
const SIZE: (u32, u32) = (560, 320);
const FONT: &str = "sans-serif";

/// Histogram of DSC in 20 bins of 0.05 on [0, 1] (1.0 falls in the last bin).
pub fn dice_histogram(dsc: &[f64]) -> anyhow::Result<String> {
    let mut counts = [0u32; 20];
    for &d in dsc {
        counts[((d.clamp(0.0, 1.0) * 20.0) as usize).min(19)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0).max(1) + 1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Dice (DSC) per case: histogram", (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..1f64, 0u32..top)?;
        chart
            .configure_mesh()
            .light_line_style(GRID.stroke_width(1))
            .x_desc("DSC (bins of 0.05)")
            .y_desc("cases")
            .x_label_formatter(&|x| format!("{x:.1}"))
            .draw()?;
        chart.draw_series(counts.iter().enumerate().filter(|(_, n)| **n > 0).map(|(i, &n)| {
            let lo = i as f64 * 0.05;
            Rectangle::new([(lo + 0.004, 0), (lo + 0.046, n)], BLUE.filled())
        }))?;
        root.present()?;
    }
    Ok(svg)
}

/// DSC of every case, sorted ascending, with the mean as a dashed line.
pub fn dice_sorted(sorted: &[f64]) -> anyhow::Result<String> {
    let n = sorted.len().max(1);
    let mean = sorted.iter().sum::<f64>() / n as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Dice (DSC) per case, sorted", (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(44)
            .build_cartesian_2d(0.5f64..n as f64 + 0.5, 0f64..1.02f64)?;
        chart
            .configure_mesh()
            .light_line_style(GRID.stroke_width(1))
            .x_desc("case rank (worst to best)")
            .y_desc("DSC")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()?;
        let points: Vec<(f64, f64)> = sorted.iter().enumerate().map(|(i, &d)| ((i + 1) as f64, d)).collect();
        chart.draw_series(LineSeries::new(points.clone(), BLUE.stroke_width(2)))?;
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))?;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.5, mean), (n as f64 + 0.5, mean)],
                6,
                4,
                ORANGE.stroke_width(2),
            ))?
            .label(format!("mean {mean:.4}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], ORANGE.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .border_style(GRID.stroke_width(1))
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// Latency percentiles as bars: `(label, milliseconds)`.
pub fn latency_bars(percentiles: &[(&str, f64)]) -> anyhow::Result<String> {
    let top = percentiles.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.15;
    let labels: Vec<String> = percentiles.iter().map(|p| p.0.to_string()).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Latency per case (succeeded), nearest-rank percentiles", (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(54)
            .build_cartesian_2d((0u32..percentiles.len().saturating_sub(1) as u32).into_segmented(), 0f64..top)?;
        chart
            .configure_mesh()
            .light_line_style(GRID.stroke_width(1))
            .disable_x_mesh()
            .y_desc("milliseconds")
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()?;
        chart.draw_series(
            Histogram::vertical(&chart)
                .style(BLUE.filled())
                .margin(24)
                .data(percentiles.iter().enumerate().map(|(i, p)| (i as u32, p.1))),
        )?;
        let above = TextStyle::from((FONT, 14)).pos(Pos::new(HPos::Center, VPos::Bottom));
        chart.draw_series(percentiles.iter().enumerate().map(|(i, p)| {
            Text::new(format!("{:.1} ms", p.1), (SegmentValue::CenterOf(i as u32), p.1 + top * 0.01), above.clone())
        }))?;
        root.present()?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_one_bar_per_filled_bin() {
        let svg = dice_histogram(&[0.91, 0.93, 1.0, 0.42]).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("Dice"), "{svg}");
        assert!(dice_sorted(&[0.4, 0.9, 1.0]).unwrap().contains("mean 0.7667"));
        assert!(latency_bars(&[("p50", 10.0), ("p95", 20.0)]).unwrap().contains("20.0 ms"));
    }
}
