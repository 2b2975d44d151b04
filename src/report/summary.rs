//! What the report computes in polars from the per-case frame: the paper table and the failures
//! (so both follow every filter), and nearest-rank percentiles as the SQL views define them.

use polars::prelude::*;

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

/// The non-null values of a float column, ascending.
pub fn sorted_values(frame: &DataFrame, column: &str) -> PolarsResult<Vec<f64>> {
    let mut values: Vec<f64> = frame.column(column)?.f64()?.iter().flatten().collect();
    values.sort_by(f64::total_cmp);
    Ok(values)
}

/// Succeeded cases with ground truth: the ones with metrics.
pub fn scored(cases: &DataFrame) -> PolarsResult<DataFrame> {
    cases.clone().lazy().filter(col("status").eq(lit("succeeded")).and(col("has_ground_truth"))).collect()
}

/// The paper's table (its Tables 2, 4 and 5: DSC, mIoU, recall, precision), two rows per run with
/// ground truth: the mean of per-case values, and the values of the pixel counts pooled over the
/// run's cases.
pub fn paper(cases: &DataFrame) -> PolarsResult<DataFrame> {
    let per_run = scored(cases)?
        .lazy()
        .group_by_stable([col("run_id"), col("model_name")])
        .agg([
            len().cast(DataType::Int64).alias("cases"),
            col("dsc").mean(),
            col("miou").mean(),
            col("recall").mean(),
            col("precision").mean(),
            col("tp").sum(),
            col("fp").sum(),
            col("fn").sum(),
            col("tn").sum(),
        ])
        .collect()?;
    let text = |name: &str, i: usize| -> PolarsResult<String> {
        Ok(per_run.column(name)?.str()?.get(i).unwrap_or_default().to_string())
    };
    let int = |name: &str, i: usize| -> PolarsResult<i64> { Ok(per_run.column(name)?.i64()?.get(i).unwrap_or(0)) };
    let float = |name: &str, i: usize| -> PolarsResult<Option<f64>> { Ok(per_run.column(name)?.f64()?.get(i)) };
    let mut rows: Vec<(String, String, i64, &str, [Option<f64>; 4])> = Vec::new();
    for i in 0..per_run.height() {
        let (run, model, n) = (text("run_id", i)?, text("model_name", i)?, int("cases", i)?);
        let mean = [float("dsc", i)?, float("miou", i)?, float("recall", i)?, float("precision", i)?];
        let pooled = Confusion {
            tp: int("tp", i)? as u64,
            fp: int("fp", i)? as u64,
            fn_: int("fn", i)? as u64,
            tn: int("tn", i)? as u64,
        }
        .scores();
        rows.push((run.clone(), model.clone(), n, "mean of per-case values", mean));
        let pooled = [Some(pooled.dsc), Some(pooled.miou), Some(pooled.recall), Some(pooled.precision)];
        rows.push((run, model, n, "pooled over all pixels", pooled));
    }
    let metric = |j: usize| rows.iter().map(|r| r.4[j]).collect::<Vec<_>>();
    DataFrame::new(
        rows.len(),
        vec![
            Column::new("run_id".into(), rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>()),
            Column::new("model_name".into(), rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>()),
            Column::new("cases".into(), rows.iter().map(|r| r.2).collect::<Vec<_>>()),
            Column::new("aggregate".into(), rows.iter().map(|r| r.3).collect::<Vec<_>>()),
            Column::new("dsc".into(), metric(0)),
            Column::new("miou".into(), metric(1)),
            Column::new("recall".into(), metric(2)),
            Column::new("precision".into(), metric(3)),
        ],
    )
}

/// Failed cases per stage and reason: how many, first and last seen, and the latest case as an
/// example (latest by record time, then case id, as in the failures view). Most frequent first.
pub fn failures(cases: &DataFrame) -> PolarsResult<DataFrame> {
    cases
        .clone()
        .lazy()
        .filter(col("status").eq(lit("failed")))
        .sort(["recorded_at", "case_id"], SortMultipleOptions::default().with_order_descending(true))
        .group_by_stable([col("error_stage").alias("stage"), col("error_reason").alias("reason")])
        .agg([
            len().cast(DataType::Int64).alias("cases"),
            col("recorded_at").last().alias("first_seen"),
            col("recorded_at").first().alias("last_seen"),
            col("case_id").first().alias("latest_case_id"),
            col("source_path").first().alias("latest_source_path"),
            col("run_id").first().alias("latest_run_id"),
        ])
        .sort_by_exprs(
            [col("cases"), col("stage"), col("reason")],
            SortMultipleOptions::default().with_order_descending_multi([true, false, false]),
        )
        .collect()
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
        let cases = df!(
            "run_id" => ["r", "r", "r"],
            "model_name" => ["m", "m", "m"],
            "status" => ["succeeded", "succeeded", "failed"],
            "has_ground_truth" => [true, true, true],
            "dsc" => [Some(1.0), Some(0.5), None],
            "miou" => [Some(1.0), Some(0.5), None],
            "recall" => [Some(1.0), Some(0.5), None],
            "precision" => [Some(1.0), Some(0.5), None],
            "tp" => [Some(10i64), Some(0), None],
            "fp" => [Some(0i64), Some(10), None],
            "fn" => [Some(0i64), Some(0), None],
            "tn" => [Some(90i64), Some(90), None],
        )
        .unwrap();
        let table = paper(&cases).unwrap();
        assert_eq!(table.height(), 2);
        let dsc = table.column("dsc").unwrap().f64().unwrap();
        assert_eq!(dsc.get(0), Some(0.75));
        assert_eq!(dsc.get(1), Some(2.0 * 10.0 / (2.0 * 10.0 + 10.0)));
        assert_eq!(table.column("cases").unwrap().i64().unwrap().get(0), Some(2));
    }
}
