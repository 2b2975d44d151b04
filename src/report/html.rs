//! The HTML report: one self-contained file (inline CSS, inline SVG charts, images as base64 PNGs,
//! no network access) with the summary, the paper table, the Dice charts, latency percentiles,
//! the failures and the worst and best cases with their outlines.

use std::fmt::Write;

use super::export::{cell, full};
use super::frame::Frame;
use super::load::{self, Filters};
use super::outline::{self, Figure};
use super::{Table, charts, summary};
use crate::store::Store;

/// Everything the page shows, read once.
pub struct Data {
    pub runs: Frame,
    /// What the runs' model cards say the models are for (a demonstration model says so).
    pub notices: Vec<String>,
    pub cases: Frame,
    pub paper: Frame,
    pub failures: Frame,
    pub worst: Vec<Example>,
    pub best: Vec<Example>,
}

pub struct Example {
    pub source_path: String,
    pub case_id: String,
    pub dsc: f64,
    /// "N slices, V mL" for a series case; None for an image or one DICOM frame.
    pub extent: Option<String>,
    pub figure: Figure,
}

impl Data {
    pub async fn load(store: &Store, filters: &Filters, examples: usize) -> anyhow::Result<Data> {
        let runs = load::frame(store, &load::RUNS, filters).await?;
        let notices = load::model_notices(store, &runs).await?;
        let cases = load::frame(store, &load::CASES, filters).await?;
        let paper = summary::paper(&cases);
        let failures = summary::failures(&cases);
        // By DSC, then case id, ascending (cases without a DSC first).
        let scored = summary::scored(&cases);
        let mut ranked: Vec<usize> = (0..scored.height()).collect();
        let key = |i: usize| (scored.float(i, "dsc"), scored.text(i, "case_id"));
        ranked.sort_by(|&a, &b| key(a).partial_cmp(&key(b)).unwrap_or(std::cmp::Ordering::Equal));
        let n = ranked.len();
        let worst_n = examples.min(n);
        let best_n = examples.min(n - worst_n);
        let worst = ranked[..worst_n].iter().map(|&i| example(&scored, i)).collect();
        let best = ranked.iter().rev().take(best_n).map(|&i| example(&scored, i)).collect();
        Ok(Data { runs, notices, cases, paper, failures, worst, best })
    }
}

fn example(scored: &Frame, i: usize) -> Example {
    let source_path = scored.text(i, "source_path").unwrap_or_default().to_string();
    let n_frames = scored.get(i, "n_frames").as_i64();
    let figure = match n_frames {
        // A series: its montage is the picture (there is no one input image to outline).
        Some(_) => outline::montage(scored.text(i, "overlay_path")),
        None => outline::figure(
            &source_path,
            scored.text(i, "mask_path"),
            scored.text(i, "ground_truth_path"),
            scored.text(i, "overlay_path"),
        ),
    };
    Example {
        case_id: scored.text(i, "case_id").unwrap_or_default().to_string(),
        dsc: scored.float(i, "dsc").unwrap_or(f64::NAN),
        extent: extent(n_frames, scored.float(i, "volume_ml"), scored.float(i, "truth_volume_ml")),
        source_path,
        figure,
    }
}

/// A series case's size as people say it: "40 slices, 12.34 mL (ground truth 11.90 mL)", the
/// volumes when the series' geometry gave them. None without slices: an image, or one DICOM frame.
fn extent(n_frames: Option<i64>, volume_ml: Option<f64>, truth_volume_ml: Option<f64>) -> Option<String> {
    let n = n_frames?;
    let mut text = format!("{n} slice{}", if n == 1 { "" } else { "s" });
    if let Some(v) = volume_ml {
        text += &format!(", {v:.2} mL");
    }
    if let Some(t) = truth_volume_ml {
        text += &format!(" (ground truth {t:.2} mL)");
    }
    Some(text)
}

pub fn render(data: &Data, filters: &Filters, store: &str) -> anyhow::Result<String> {
    let dsc = summary::scored(&data.cases).sorted_floats("dsc");
    let latency = data.cases.filter(|f, i| f.text(i, "status") == Some("succeeded")).sorted_floats("latency_ms");
    let count =
        |status: &str| (0..data.cases.height()).filter(|&i| data.cases.text(i, "status") == Some(status)).count();
    let duplicates: i64 = (0..data.runs.height()).filter_map(|i| data.runs.get(i, "duplicates").as_i64()).sum();

    let mut page = String::with_capacity(1 << 20);
    page += HEAD;
    let images = data.worst.iter().chain(&data.best).map(|e| e.figure.panels.len()).sum::<usize>();
    writeln!(page, "<body data-images-expected=\"{images}\">")?;
    writeln!(page, "<header><h1>efen report</h1><p class=\"meta\">{}</p></header>", esc(&meta(filters, store)))?;
    for notice in &data.notices {
        writeln!(page, "<p class=\"notice\">{}</p>", esc(notice))?;
    }

    page += "<section class=\"cards\">";
    let mean = if dsc.is_empty() { None } else { Some(dsc.iter().sum::<f64>() / dsc.len() as f64) };
    let cards: [(&str, String); 7] = [
        ("cases", data.cases.height().to_string()),
        ("succeeded", count("succeeded").to_string()),
        ("failed", count("failed").to_string()),
        ("duplicates", duplicates.to_string()),
        ("mean DSC", mean.map_or("–".into(), |m| format!("{m:.4}"))),
        ("median DSC", summary::nearest_rank(&dsc, 50).map_or("–".into(), |m| format!("{m:.4}"))),
        ("p95 latency", summary::nearest_rank(&latency, 95).map_or("–".into(), |m| format!("{m:.1} ms"))),
    ];
    for (label, value) in cards {
        write!(
            page,
            "<div class=\"card\"><div class=\"value\">{}</div><div class=\"label\">{label}</div></div>",
            esc(&value)
        )?;
    }
    page += "</section>\n";

    section(&mut page, "Runs", super::export::title(Table::Runs), &table(&data.runs, Table::Runs))?;
    section(
        &mut page,
        "Paper table",
        "DSC, mIoU, Recall and Precision in %, as in the paper's Tables 2, 4 and 5; succeeded cases with ground truth",
        &table(&data.paper, Table::Paper),
    )?;

    page += "<section><h2>Dice</h2><div class=\"charts\">";
    if dsc.is_empty() {
        page += "<p class=\"empty\">No case with ground truth.</p>";
    } else {
        write!(
            page,
            "<figure>{}</figure><figure>{}</figure>",
            charts::dice_histogram(&dsc)?,
            charts::dice_sorted(&dsc)?
        )?;
    }
    page += "</div></section>\n";

    page += "<section><h2>Latency</h2><div class=\"charts\">";
    if latency.is_empty() {
        page += "<p class=\"empty\">No succeeded case.</p>";
    } else {
        let points: Vec<(&str, f64)> = [("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99), ("max", 100)]
            .iter()
            .map(|&(label, p)| (label, summary::nearest_rank(&latency, p).unwrap_or(0.0)))
            .collect();
        write!(page, "<figure>{}</figure>", charts::latency_bars(&points)?)?;
        page += "<table class=\"small\"><tr><th>percentile</th><th>latency (ms)</th></tr>";
        for (label, value) in &points {
            write!(page, "<tr><td>{label}</td><td class=\"num\">{value:.1}</td></tr>")?;
        }
        write!(page, "<tr><td>cases</td><td class=\"num\">{}</td></tr></table>", latency.len())?;
    }
    page += "</div></section>\n";

    let failures = if data.failures.height() == 0 {
        "<p class=\"empty\">No failures.</p>".to_string()
    } else {
        table(&data.failures, Table::Failures)
    };
    section(&mut page, "Failures", super::export::title(Table::Failures), &failures)?;
    examples(&mut page, "Worst cases", &data.worst)?;
    examples(&mut page, "Best cases", &data.best)?;
    page += SCRIPT;
    page += "</body></html>\n";
    Ok(page)
}

fn meta(filters: &Filters, store: &str) -> String {
    let mut parts = vec![format!("generated {} UTC", chrono::Utc::now().format("%Y-%m-%d %H:%M:%S"))];
    parts.push(format!("store {store}"));
    parts.push(format!("efen {}", env!("CARGO_PKG_VERSION")));
    for (name, value) in [
        ("run", &filters.run),
        ("pipeline", &filters.pipeline),
        ("model", &filters.model),
        ("since", &filters.since),
        ("until", &filters.until),
    ] {
        if let Some(value) = value {
            parts.push(format!("{name} {value}"));
        }
    }
    parts.join(" · ")
}

fn section(page: &mut String, title: &str, note: &str, body: &str) -> std::fmt::Result {
    writeln!(page, "<section><h2>{}</h2><p class=\"note\">{}</p>{body}</section>", esc(title), esc(note))
}

fn table(frame: &Frame, kind: Table) -> String {
    let percent = kind == Table::Paper;
    let columns = super::export::shown(frame, kind);
    let mut html = String::from("<div class=\"scroll\"><table><thead><tr>");
    for &c in &columns {
        html += &format!("<th>{}</th>", esc(&frame.columns[c].name.replace('_', " ")));
    }
    html += "</tr></thead><tbody>";
    for row in &frame.rows {
        html += "<tr>";
        for &c in &columns {
            let column = &frame.columns[c];
            let class = if column.kind.is_numeric() { " class=\"num\"" } else { "" };
            let (title, text) = (full(&row[c]), cell(column, &row[c], percent));
            html += &format!("<td{class} title=\"{}\">{}</td>", esc(&title), esc(&text));
        }
        html += "</tr>";
    }
    html + "</tbody></table></div>"
}

fn examples(page: &mut String, title: &str, examples: &[Example]) -> std::fmt::Result {
    writeln!(page, "<section><h2>{title}</h2>")?;
    if examples.is_empty() {
        page.push_str("<p class=\"empty\">No case with ground truth.</p>");
    }
    for e in examples {
        write!(
            page,
            "<div class=\"case\"><h3>{} <span class=\"dsc\">DSC {:.4}</span></h3><p class=\"note\">case {}{}</p>",
            esc(&e.source_path),
            e.dsc,
            esc(&e.case_id),
            e.extent.as_ref().map_or(String::new(), |x| format!(" · {}", esc(x)))
        )?;
        if let Some(note) = &e.figure.note {
            write!(page, "<p class=\"fallback\">{}</p>", esc(note))?;
        }
        page.push_str("<div class=\"panels\">");
        for p in &e.figure.panels {
            write!(
                page,
                "<figure><img alt=\"{0}\" src=\"{1}\"><figcaption>{0}</figcaption></figure>",
                esc(&p.caption),
                p.src
            )?;
        }
        page.push_str("</div></div>");
    }
    writeln!(page, "</section>")
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const HEAD: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>efen report</title>
<style>
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1f2328; background: #f6f8fa; margin: 0; padding: 0 32px 48px; }
header { padding: 24px 0 8px; }
h1 { margin: 0; font-size: 28px; }
h2 { margin: 0 0 4px; font-size: 20px; }
h3 { margin: 0; font-size: 15px; word-break: break-all; }
.meta, .note { color: #57606a; margin: 4px 0 12px; font-size: 13px; }
.notice { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 4px; padding: 8px 12px; margin: 8px 0; }
section { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 16px 20px; margin: 16px 0; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; background: none; border: none; padding: 0; }
.card { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 12px 18px; min-width: 120px; }
.card .value { font-size: 24px; font-weight: 600; color: #3b6fb6; }
.card .label { color: #57606a; font-size: 13px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 5px 10px; border-bottom: 1px solid #eaeef2; text-align: left; white-space: nowrap; max-width: 28em; overflow: hidden; text-overflow: ellipsis; }
th { background: #f6f8fa; font-weight: 600; white-space: normal; vertical-align: bottom; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.small { align-self: center; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
figure { margin: 0; }
.case { border-top: 1px solid #eaeef2; padding: 12px 0; }
.dsc { color: #3b6fb6; font-weight: 600; margin-left: 8px; }
.panels { display: flex; gap: 12px; flex-wrap: wrap; }
.panels img { display: block; max-width: 360px; border-radius: 4px; background: #000; }
figcaption { font-size: 12px; color: #57606a; margin-top: 4px; }
.fallback { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px; padding: 6px 10px; font-size: 13px; }
.empty { color: #57606a; font-style: italic; }
</style></head>
"#;

/// Marks the body with how many images decoded, for the headless-browser test.
const SCRIPT: &str = r#"<script>
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images-loaded', String(loaded));
  document.body.setAttribute('data-images-total', String(images.length));
});
</script>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_case_says_its_slices_and_volume() {
        assert_eq!(extent(None, None, None), None);
        assert_eq!(extent(Some(40), Some(12.5), Some(11.9)).unwrap(), "40 slices, 12.50 mL (ground truth 11.90 mL)");
        assert_eq!(extent(Some(1), None, None).unwrap(), "1 slice");
    }
}
