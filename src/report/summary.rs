//! What the report computes from the per-case frame: the paper table and the failures (so both
//! follow every filter), and nearest-rank percentiles as the SQL views define them.

use super::frame::{Frame, Kind, Value};
use crate::metrics::Confusion;

/// The p-th percentile, nearest-rank: the k-th smallest of n values, k = ceil(p·n/100), in
/// integers as in the SQL views. `sorted` must be ascending.
pub fn nearest_rank(sorted: &[f64], p: u32) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let k = (p as usize * n).div_ceil(100).max(1);
    Some(sorted[k - 1])
}

/// Succeeded cases with ground truth: the ones with metrics.
pub fn scored(cases: &Frame) -> Frame {
    cases
        .filter(|f, i| f.text(i, "status") == Some("succeeded") && f.get(i, "has_ground_truth").as_bool() == Some(true))
}

/// Rows grouped by a key, groups in the order their first row appears.
fn groups<K: PartialEq>(frame: &Frame, key: impl Fn(usize) -> K) -> Vec<(K, Vec<usize>)> {
    let mut groups: Vec<(K, Vec<usize>)> = Vec::new();
    for i in 0..frame.height() {
        let k = key(i);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, rows)) => rows.push(i),
            None => groups.push((k, vec![i])),
        }
    }
    groups
}

/// The mean of the non-null values, or null when there are none.
fn mean(frame: &Frame, rows: &[usize], name: &str) -> Option<f64> {
    let values: Vec<f64> = rows.iter().filter_map(|&i| frame.float(i, name)).collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn sum(frame: &Frame, rows: &[usize], name: &str) -> u64 {
    rows.iter().filter_map(|&i| frame.get(i, name).as_i64()).sum::<i64>().max(0) as u64
}

/// The paper's table (its Tables 2, 4 and 5: DSC, mIoU, recall, precision), two rows per run with
/// ground truth: the mean of per-case values, and the values of the pixel counts pooled over the
/// run's cases.
pub fn paper(cases: &Frame) -> Frame {
    let scored = scored(cases);
    let mut table = Frame::new(&[
        ("run_id", Kind::Text),
        ("model_name", Kind::Text),
        ("cases", Kind::Int),
        ("aggregate", Kind::Text),
        ("dsc", Kind::Float),
        ("miou", Kind::Float),
        ("recall", Kind::Float),
        ("precision", Kind::Float),
    ]);
    let key = |i: usize| (scored.text(i, "run_id").map(String::from), scored.text(i, "model_name").map(String::from));
    for ((run, model), rows) in groups(&scored, key) {
        let n = Value::Int(rows.len() as i64);
        let mean = |name| Value::from(mean(&scored, &rows, name));
        table.push(vec![
            Value::from(run.clone()),
            Value::from(model.clone()),
            n.clone(),
            Value::Text("mean of per-case values".into()),
            mean("dsc"),
            mean("miou"),
            mean("recall"),
            mean("precision"),
        ]);
        let sum = |name| sum(&scored, &rows, name);
        let pooled = Confusion { tp: sum("tp"), fp: sum("fp"), fn_: sum("fn"), tn: sum("tn") }.scores();
        table.push(vec![
            Value::from(run),
            Value::from(model),
            n,
            Value::Text("pooled over all pixels".into()),
            Value::Float(pooled.dsc),
            Value::Float(pooled.miou),
            Value::Float(pooled.recall),
            Value::Float(pooled.precision),
        ]);
    }
    table
}

/// Failed cases per stage and reason: how many, first and last seen, and the latest case as an
/// example (latest by record time, then case id, as in the failures view). Most frequent first.
pub fn failures(cases: &Frame) -> Frame {
    let failed = cases.filter(|f, i| f.text(i, "status") == Some("failed"));
    // Latest first: by record time, then case id, both descending.
    let mut order: Vec<usize> = (0..failed.height()).collect();
    let recency = |i: usize| (failed.text(i, "recorded_at"), failed.text(i, "case_id"));
    order.sort_by(|&a, &b| recency(b).cmp(&recency(a)));
    let failed =
        Frame { columns: failed.columns.clone(), rows: order.iter().map(|&i| failed.rows[i].clone()).collect() };
    let key =
        |i: usize| (failed.text(i, "error_stage").map(String::from), failed.text(i, "error_reason").map(String::from));
    let mut table = Frame::new(&[
        ("stage", Kind::Text),
        ("reason", Kind::Text),
        ("cases", Kind::Int),
        ("first_seen", Kind::Time),
        ("last_seen", Kind::Time),
        ("latest_case_id", Kind::Text),
        ("latest_source_path", Kind::Text),
        ("latest_run_id", Kind::Text),
    ]);
    let mut grouped = groups(&failed, key);
    grouped.sort_by(|(a, ra), (b, rb)| rb.len().cmp(&ra.len()).then_with(|| a.cmp(b)));
    for ((stage, reason), rows) in grouped {
        let (latest, earliest) = (rows[0], rows[rows.len() - 1]);
        table.push(vec![
            Value::from(stage),
            Value::from(reason),
            Value::Int(rows.len() as i64),
            failed.get(earliest, "recorded_at").clone(),
            failed.get(latest, "recorded_at").clone(),
            failed.get(latest, "case_id").clone(),
            failed.get(latest, "source_path").clone(),
            failed.get(latest, "run_id").clone(),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_matches_the_sql_definition() {
        let v: Vec<f64> = (1..=12).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 50), Some(6.0));
        assert_eq!(nearest_rank(&v, 95), Some(12.0));
        assert_eq!(nearest_rank(&v[..1], 95), Some(1.0));
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(nearest_rank(&twenty, 95), Some(19.0));
        assert_eq!(nearest_rank(&[], 50), None);
    }

    #[test]
    fn paper_table_has_the_mean_and_the_pooled_row() {
        let mut cases = Frame::new(&[
            ("run_id", Kind::Text),
            ("model_name", Kind::Text),
            ("status", Kind::Text),
            ("has_ground_truth", Kind::Bool),
            ("dsc", Kind::Float),
            ("miou", Kind::Float),
            ("recall", Kind::Float),
            ("precision", Kind::Float),
            ("tp", Kind::Int),
            ("fp", Kind::Int),
            ("fn", Kind::Int),
            ("tn", Kind::Int),
        ]);
        let text = |s: &str| Value::Text(s.into());
        for (status, score, counts) in [
            ("succeeded", Some(1.0), Some([10, 0, 0, 90])),
            ("succeeded", Some(0.5), Some([0, 10, 0, 90])),
            ("failed", None, None),
        ] {
            let mut row = vec![text("r"), text("m"), text(status), Value::Bool(true)];
            row.extend([score; 4].map(Value::from));
            row.extend((0..4).map(|k| Value::from(counts.map(|c: [i64; 4]| c[k]))));
            cases.push(row);
        }
        let table = paper(&cases);
        assert_eq!(table.height(), 2);
        assert_eq!(table.float(0, "dsc"), Some(0.75));
        assert_eq!(table.float(1, "dsc"), Some(2.0 * 10.0 / (2.0 * 10.0 + 10.0)));
        assert_eq!(table.get(0, "cases"), &Value::Int(2));
    }

    #[test]
    fn failures_group_by_stage_and_reason_most_frequent_first() {
        let mut cases = Frame::new(&[
            ("case_id", Kind::Text),
            ("run_id", Kind::Text),
            ("source_path", Kind::Text),
            ("status", Kind::Text),
            ("error_stage", Kind::Text),
            ("error_reason", Kind::Text),
            ("recorded_at", Kind::Time),
        ]);
        let text = |s: &str| Value::Text(s.into());
        for (id, stage, reason, at) in
            [("a", "decode", "empty", "t1"), ("b", "ingest", "too large", "t2"), ("c", "decode", "empty", "t3")]
        {
            cases.push(vec![text(id), text("r"), text(id), text("failed"), text(stage), text(reason), text(at)]);
        }
        let table = failures(&cases);
        assert_eq!(table.height(), 2);
        assert_eq!((table.text(0, "reason"), table.get(0, "cases")), (Some("empty"), &Value::Int(2)));
        assert_eq!((table.text(0, "latest_case_id"), table.text(0, "first_seen")), (Some("c"), Some("t1")));
        assert_eq!(table.text(1, "stage"), Some("ingest"));
    }
}
