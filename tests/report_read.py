"""Reads `efen report` exports back from Python, as people will: the runs CSV with pandas and the
cases Parquet with pyarrow. Prints JSON that tests/report.rs compares with the store.

Usage: report_read.py RUNS.csv CASES.parquet
       report_read.py --table csv|parquet FILE   (the whole table as pandas' split JSON)
"""

import json
import math
import sys

import pandas as pd
import pyarrow.parquet as pq


def number(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def main(runs_csv, cases_parquet):
    runs = pd.read_csv(runs_csv)
    cases = pq.read_table(cases_parquet).to_pandas()
    scored = cases[(cases["status"] == "succeeded") & cases["has_ground_truth"]]
    print(json.dumps({
        "runs": {
            row["run_id"]: {
                "cases": int(row["cases"]),
                "failed": int(row["failed"]),
                "mean_dsc": number(row["mean_dsc"]),
                "median_dsc": number(row["median_dsc"]),
                "p95_latency_ms": number(row["p95_latency_ms"]),
            }
            for _, row in runs.iterrows()
        },
        "cases": {row["case_id"]: number(row["dsc"]) for _, row in cases.iterrows()},
        "scored": int(len(scored)),
        "mean_dsc": number(scored["dsc"].mean()),
    }))


def table(kind, path):
    frame = pd.read_csv(path) if kind == "csv" else pq.read_table(path).to_pandas()
    print(frame.to_json(orient="split", index=False, double_precision=15))


if __name__ == "__main__":
    if sys.argv[1] == "--table":
        table(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1], sys.argv[2])
