"""Bare ONNX Runtime from Python: img/s of one model at one batch size on one provider, the
reference beside `efen bench` in scripts/gpu-bench.sh.

    python bench/bare_ort.py MODEL.onnx --batch 32 --size 288 384 --provider cuda [--nhwc]
"""
import argparse
import json
import time

import numpy as np
import onnxruntime as ort


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, nargs=2, default=[288, 384], metavar=("H", "W"))
    parser.add_argument("--provider", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--nhwc", action="store_true", help="CUDA prefer_nhwc")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    if args.provider == "cuda":
        providers = [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "EXHAUSTIVE",
                                                "prefer_nhwc": "1" if args.nhwc else "0"})]
    else:
        providers = ["CPUExecutionProvider"]
    session = ort.InferenceSession(args.model, providers=providers)
    used = session.get_providers()[0]
    x = np.random.default_rng(0).standard_normal((args.batch, 3, *args.size), dtype=np.float32)
    for _ in range(3):  # warm-up: cuDNN's algorithm search runs on the first batches
        session.run(None, {"image": x})
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        session.run(None, {"image": x})
        done += args.batch
    elapsed = time.perf_counter() - start
    print(json.dumps({"model": args.model, "provider": used, "batch": args.batch, "nhwc": args.nhwc,
                      "size": args.size, "img_per_s": round(done / elapsed, 1)}))


if __name__ == "__main__":
    main()
