#!/usr/bin/env bash
# efen on a GPU, measured in one call: `efen bench` with the CUDA execution provider on the
# full-width EFEN (untrained: speed only) in fp32 and fp16, at batch 1 and 32, each beside bare
# ONNX Runtime on the same device (efen bench's own comparison, and bench/bare_ort.py from Python).
#
#   scripts/gpu-bench.sh [--cases N] [--size WxH] [--width W]
#
# What it needs on the GPU machine (nothing there can be downloaded):
# - the efen binary at $EFEN_BIN (default .efen/bin/efen: copy target/release/efen there and carry
#   it with the working tree);
# - the onnxruntime-gpu wheel for the machine's CUDA: $ORT_GPU_WHEEL, or its pieces (made with
#   `split -b 60M`) matching $ORT_GPU_PARTS (default /tmp/ort-gpu/part-*), joined here; the pieces
#   can travel one per call to a warm machine when a call carries too little for the whole wheel;
# - Python with PyTorch, onnx and onnxruntime (CPU is enough: it makes the fp16 copy), and the CUDA
#   and cuDNN libraries: those of PyTorch's nvidia-* packages are put on LD_LIBRARY_PATH.
# GPU_BENCH_PROVIDER=cpu runs the same steps on the CPU (to check this script on any machine).
# GPU_BENCH_SESSIONS (default 1, as efen bench's bare runs use one session: a fair ratio) sets
# runtime.sessions; 2 lets one batch copy while the other runs.
set -euo pipefail
cd "$(dirname "$0")/.."

cases=2000 size=384x288 width=1.0
while [ $# -gt 0 ]; do
  case "$1" in
    --cases) cases=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --width) width=$2; shift 2 ;;
    *) echo "gpu-bench: unknown option $1" >&2; exit 2 ;;
  esac
done
provider=${GPU_BENCH_PROVIDER:-cuda}
python=${GPU_BENCH_PYTHON:-python3}
work=${GPU_BENCH_DIR:-$(mktemp -d)}
efen=${EFEN_BIN:-.efen/bin/efen}
[ -x "$efen" ] || { echo "gpu-bench: no efen binary at $efen (set EFEN_BIN)" >&2; exit 1; }
w=${size%x*} h=${size#*x}

if [ "$provider" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  wheel=${ORT_GPU_WHEEL:-}
  if [ -z "$wheel" ]; then
    parts=( ${ORT_GPU_PARTS:-/tmp/ort-gpu/part-*} )
    [ -e "${parts[0]}" ] || { echo "gpu-bench: no onnxruntime-gpu wheel (ORT_GPU_WHEEL) or pieces (ORT_GPU_PARTS)" >&2; exit 1; }
    wheel="$work/$(cat "$(dirname "${parts[0]}")/name" 2>/dev/null || echo onnxruntime_gpu-0-cp312-cp312-manylinux_2_28_x86_64.whl)"
    cat "${parts[@]}" > "$wheel"
  fi
  "$python" -m pip install -q --no-deps --target "$work/ort-gpu" "$wheel"
  export ORT_DYLIB_PATH=$(ls "$work"/ort-gpu/onnxruntime/capi/libonnxruntime.so.* | head -1)
  export PYTHONPATH="$work/ort-gpu${PYTHONPATH:+:$PYTHONPATH}"
  # CUDA, cuBLAS and cuDNN from PyTorch's wheels.
  nvidia_libs=$("$python" -c 'import glob, os, nvidia; print(":".join(sorted({os.path.dirname(p) for d in nvidia.__path__ for p in glob.glob(os.path.join(d, "*", "lib", "*.so*"))})))')
  export LD_LIBRARY_PATH="$nvidia_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
else
  echo "gpu-bench: GPU_BENCH_PROVIDER=$provider (a check of the script, not a GPU figure)"
fi
echo "efen: $("$efen" --version), ONNX Runtime: ${ORT_DYLIB_PATH:-the default}, work folder: $work"

# The models: full-width fp32, then its fp16 copy (float32 input and output, as efen feeds it).
"$python" bench/gpu_export.py --width "$width" --size "$h" "$w" --out "$work/efen-fp32.onnx"
precisions=fp32
if "$python" bench/fp16.py "$work/efen-fp32.onnx" "$work/efen-fp16.onnx"; then
  precisions="fp32 fp16"
else
  echo "gpu-bench: no fp16 copy (the reason is above): fp32 only"
fi
for precision in $precisions; do
  cat > "$work/pipeline-$precision.toml" <<TOML
name = "gpu-bench-$precision"
model = "efen-$precision.onnx"
[preprocess]
fit = "resize"
[outputs]
mask = true
overlay = true
TOML
done

export EFEN_RUNTIME__PROVIDERS="[\"$provider\"]" EFEN_RUNTIME__SESSIONS=${GPU_BENCH_SESSIONS:-1}
for precision in $precisions; do
  for batch in 1 32; do
    nhwc=false; [ "$precision" = fp16 ] && nhwc=true
    echo; echo "== efen bench: $provider $precision, batch $batch, prefer_nhwc $nhwc, $cases cases of $size"
    EFEN_ENGINE__BATCH_SIZE=$batch EFEN_RUNTIME__CUDA__PREFER_NHWC=$nhwc \
      "$efen" bench --pipeline "$work/pipeline-$precision.toml" --cases "$cases" --size "$size"
    "$python" bench/bare_ort.py "$work/efen-$precision.onnx" --batch "$batch" --size "$h" "$w" \
      --provider "$provider" $([ "$nhwc" = true ] && echo --nhwc) --seconds "${GPU_BENCH_SECONDS:-10}"
  done
done
