//! Plots of a run as SVG (plotters' SVG backend) and the self-contained HTML report that ties
//! them to the summary: inbound share per channel over time as a heat map, cumulative costs,
//! and the fee rate with the periods the fee gate was open.

use std::fmt::Write as _;

use plotters::prelude::*;

use super::replay::Outcome;

/// The most heat-map rows and columns drawn; larger runs are sampled.
const HEAT_MAX: usize = 240;

type PlotResult = Result<String, String>;

fn days(o: &Outcome, at: chrono::DateTime<chrono::Utc>) -> f64 {
    (at - o.start).num_seconds() as f64 / 86_400.0
}

/// Inbound share of each channel over time (rows: channels, columns: hours).
pub fn heat_map(name: &str, o: &Outcome) -> PlotResult {
    let mut svg = String::new();
    {
        let rows = o.hourly_inbound.len();
        let cols = o.hourly_inbound.iter().map(Vec::len).max().unwrap_or(0);
        let row_step = rows.div_ceil(HEAT_MAX).max(1);
        let col_step = cols.div_ceil(HEAT_MAX).max(1);
        let root = SVGBackend::with_string(&mut svg, (900, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{name}: inbound share per channel (blue 0 %, red 100 %)"),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(
                0f64..(cols as f64 / 24.0).max(1.0),
                0f64..rows.max(1) as f64,
            )
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("days")
            .y_desc("channel")
            .draw()
            .map_err(|e| e.to_string())?;
        let mut cells = Vec::new();
        for r in (0..rows).step_by(row_step) {
            let row = &o.hourly_inbound[r];
            for c in (0..row.len()).step_by(col_step) {
                let v = f64::from(row[c]) / 1000.0;
                let color = RGBColor((255.0 * v) as u8, 40, (255.0 * (1.0 - v)) as u8);
                cells.push(Rectangle::new(
                    [
                        (c as f64 / 24.0, r as f64),
                        ((c + col_step) as f64 / 24.0, (r + row_step) as f64),
                    ],
                    color.filled(),
                ));
            }
        }
        chart.draw_series(cells).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Cumulative costs of one run or two.
pub fn costs(runs: &[(String, Outcome)]) -> PlotResult {
    let mut svg = String::new();
    {
        let max = runs
            .iter()
            .filter_map(|(_, o)| o.series.last().map(|p| p.cumulative_cost))
            .max()
            .unwrap_or(0)
            .max(1) as f64;
        let span = runs
            .first()
            .map(|(_, o)| days(o, o.end))
            .unwrap_or(1.0)
            .max(0.01);
        let root = SVGBackend::with_string(&mut svg, (900, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption("cumulative costs (sat)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..span, 0f64..max * 1.05)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("days")
            .draw()
            .map_err(|e| e.to_string())?;
        for (k, (name, o)) in runs.iter().enumerate() {
            let color = if k == 0 { BLUE } else { RED };
            chart
                .draw_series(LineSeries::new(
                    o.series
                        .iter()
                        .map(|p| (days(o, p.at), p.cumulative_cost as f64)),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// The 6-block fee rate, with the periods every fee gate was open shaded green.
pub fn fee_rate(name: &str, o: &Outcome) -> PlotResult {
    let mut svg = String::new();
    {
        let max = o.series.iter().map(|p| p.fee_sat_vb).fold(1.0f64, f64::max);
        let span = days(o, o.end).max(0.01);
        let root = SVGBackend::with_string(&mut svg, (900, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{name}: fee rate (sat/vB, 6 blocks); green: fee gate open"),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..span, 0f64..max * 1.1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("days")
            .draw()
            .map_err(|e| e.to_string())?;
        let mut open = Vec::new();
        let mut from: Option<f64> = None;
        for p in &o.series {
            let x = days(o, p.at);
            match (p.gate_open, from) {
                (true, None) => from = Some(x),
                (false, Some(f)) => {
                    open.push((f, x));
                    from = None;
                }
                _ => {}
            }
        }
        if let Some(f) = from {
            open.push((f, span));
        }
        chart
            .draw_series(
                open.into_iter().map(|(a, b)| {
                    Rectangle::new([(a, 0.0), (b, max * 1.1)], GREEN.mix(0.15).filled())
                }),
            )
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                o.series.iter().map(|p| (days(o, p.at), p.fee_sat_vb)),
                BLACK.stroke_width(1),
            ))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Every plot of the runs, as (file name, SVG).
pub fn all(runs: &[(String, Outcome)]) -> Result<Vec<(String, String)>, String> {
    let mut out = vec![("costs.svg".to_owned(), costs(runs)?)];
    for (k, (name, o)) in runs.iter().enumerate() {
        out.push((format!("inbound-{k}.svg"), heat_map(name, o)?));
        out.push((format!("fees-{k}.svg"), fee_rate(name, o)?));
    }
    Ok(out)
}

/// A self-contained HTML page: the summary and every plot inline.
pub fn html(summary: &str, plots: &[(String, String)]) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut h = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>sluice backtest</title>\
         <style>body{font-family:sans-serif;margin:2em}pre{background:#f4f4f4;padding:1em}</style>\
         </head><body>\n<h1>sluice backtest</h1>\n",
    );
    let _ = writeln!(h, "<pre>{}</pre>", esc(summary));
    for (name, svg) in plots {
        let body = svg.find("<svg").map_or(svg.as_str(), |i| &svg[i..]);
        let _ = writeln!(h, "<h2>{}</h2>\n<div>{body}</div>", esc(name));
    }
    h.push_str("</body></html>\n");
    h
}
