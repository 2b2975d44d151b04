#!/usr/bin/env bash
# `efen run` against the plain Python pipeline (bench/baseline.py) on the same images, model and
# ONNX Runtime intra-op threads: wall clock of each whole process (start-up and model load
# included), images/s, the ratio efen/python and peak RSS.
#
#   bench/compare.sh [-n IMAGES] [-s WIDTHxHEIGHT] [-r REPEATS] [-t THREADS] [-k]
#
# Defaults: 200 gray 512x512 PNG images, 3 repeats, 2 threads (or BENCH_IMAGES, BENCH_SIZE,
# BENCH_REPEATS, BENCH_THREADS). -k keeps the temporary folder. The two run alternately (efen
# first on odd repeats, Python first on even ones), each time into a fresh output folder and a
# fresh SQLite store: efen skips inputs its store has already seen. The table shows the medians.
# Python: BENCH_PYTHON, else the project venv (scripts/python-env.sh). Other EFEN_* variables
# (EFEN_ENGINE__WORKERS, EFEN_ENGINE__BATCH_SIZE, ...) pass through to efen.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

images=${BENCH_IMAGES:-200} size=${BENCH_SIZE:-512x512} repeats=${BENCH_REPEATS:-3}
threads=${BENCH_THREADS:-2} keep=0
while getopts "n:s:r:t:kh" opt; do
  case $opt in
    n) images=$OPTARG ;; s) size=$OPTARG ;; r) repeats=$OPTARG ;; t) threads=$OPTARG ;; k) keep=1 ;;
    *) sed -n '2,13s/^# \{0,1\}//p' "$0"; [[ $opt == h ]] && exit 0 || exit 2 ;;
  esac
done

if [[ ! -x "$EFEN_BIN" ]]; then
  echo "compare: no efen binary at $EFEN_BIN; build it first with scripts/setup.sh" >&2
  exit 1
fi
python=${BENCH_PYTHON:-$EFEN_VENV/bin/python}
if ! "$python" -c "import numpy, PIL, onnxruntime" 2>/dev/null; then
  echo "compare: $python cannot import numpy, PIL and onnxruntime; run scripts/python-env.sh" \
       "(or set BENCH_PYTHON)" >&2
  exit 1
fi
timer=()
[[ -x /usr/bin/time ]] && timer=(/usr/bin/time -f "%M" -o)   # peak RSS in KiB

tmp=$(mktemp -d -t efen-bench.XXXXXX)
if (( keep )); then trap 'echo "compare: kept $tmp"' EXIT; else trap 'rm -rf "$tmp"' EXIT; fi
"$python" bench/make_images.py --out "$tmp/images" -n "$images" --size "$size"

# run NAME REPEAT COMMAND...: times COMMAND, appends "seconds rss_kib" to $tmp/NAME.times.
run() {
  local name=$1 rep=$2; shift 2
  local dir="$tmp/$name-$rep" start end rss=0
  mkdir -p "$dir"
  local cmd=("$@")
  if (( ${#timer[@]} )); then cmd=("${timer[@]}" "$dir/rss" "$@"); fi
  start=$(date +%s.%N)
  if ! "${cmd[@]}" >"$dir/log" 2>&1; then
    echo "compare: $name failed (repeat $rep); its output:" >&2
    tail -n 30 "$dir/log" >&2
    exit 1
  fi
  end=$(date +%s.%N)
  if [[ -s "$dir/rss" ]]; then rss=$(tail -n 1 "$dir/rss"); fi
  local masks
  masks=$(find "$dir/out" -name mask.png | wc -l)
  if (( masks != images )); then
    echo "compare: $name wrote $masks masks for $images images (repeat $rep); log in $dir/log" >&2
    keep=1; trap 'echo "compare: kept $tmp"' EXIT
    exit 1
  fi
  echo "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }') $rss" >>"$tmp/$name.times"
  printf '  %-7s repeat %s: %s s\n' "$name" "$rep" "$(tail -n 1 "$tmp/$name.times" | cut -d' ' -f1)"
}

echo "compare: $images images of $size, $threads intra-op threads, $repeats repeats, $(nproc) cores"
for rep in $(seq 1 "$repeats"); do
  # efen with a store, state folder and outputs of its own; DATABASE_URL must not override them.
  efen=(env -u DATABASE_URL "EFEN_DATABASE__URL=sqlite://$tmp/efen-$rep/efen.db"
        "EFEN_PATHS__STATE_DIR=$tmp/efen-$rep/state" "EFEN_RUNTIME__INTRA_THREADS=$threads"
        "$EFEN_BIN" run --out "$tmp/efen-$rep/out" "$tmp/images")
  baseline=("$python" bench/baseline.py --threads "$threads" --out "$tmp/python-$rep/out"
            --db "$tmp/python-$rep/baseline.db" "$tmp/images")
  if (( rep % 2 )); then
    run efen "$rep" "${efen[@]}"; run python "$rep" "${baseline[@]}"
  else
    run python "$rep" "${baseline[@]}"; run efen "$rep" "${efen[@]}"
  fi
done

# median of column $2 of file $1
median() { cut -d' ' -f"$2" "$1" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
efen_s=$(median "$tmp/efen.times" 1) python_s=$(median "$tmp/python.times" 1)
efen_rss=$(median "$tmp/efen.times" 2) python_rss=$(median "$tmp/python.times" 2)
awk -v n="$images" -v es="$efen_s" -v ps="$python_s" -v er="$efen_rss" -v pr="$python_rss" 'BEGIN {
  printf "\n%-16s %10s %10s %14s\n", "", "wall s", "images/s", "peak RSS MiB"
  printf "%-16s %10.2f %10.2f %14s\n", "efen run", es, n / es, (er > 0 ? sprintf("%.0f", er / 1024) : "n/a")
  printf "%-16s %10.2f %10.2f %14s\n", "python baseline", ps, n / ps, (pr > 0 ? sprintf("%.0f", pr / 1024) : "n/a")
  printf "\nratio efen/python (images/s): %.2f\n", ps / es
}'
