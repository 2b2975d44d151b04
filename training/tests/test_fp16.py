"""bench/fp16.py: an fp16 copy with its own card, and a refusal when fp16 would overflow."""
import json
import os
import subprocess
import sys

import onnx
from onnx import TensorProto, helper

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def run(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)


def card_for(path, **extra):
    card = json.load(open(os.path.join(ROOT, "models", "efen-small.card.json")))
    card.update({"name": os.path.basename(path), "file": os.path.basename(path), **extra})
    card["input"].update({"height": 32, "width": 32})
    json.dump(card, open(path[: -len(".onnx")] + ".card.json", "w"))


def test_an_untrained_graph_gets_an_fp16_copy_with_parity_figures(tmp_path):
    src, out = str(tmp_path / "g.onnx"), str(tmp_path / "g-fp16.onnx")
    made = run("bench/gpu_export.py", "--width", "0.0625", "--size", "32", "32", "--out", src)
    assert made.returncode == 0, made.stderr
    done = run("bench/fp16.py", src, out, "--limit", "2")
    assert done.returncode == 0, done.stderr
    half = onnx.load(out)
    weights = [t for t in half.graph.initializer if t.data_type == TensorProto.FLOAT16]
    assert weights, "weights are fp16"
    assert half.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT, "input stays float32"
    card = json.load(open(str(tmp_path / "g-fp16.card.json")))
    assert card["precision"].startswith("fp16")
    assert card["fp16"]["max_abs_prob_diff"] < 1e-2
    assert card["fp16"]["from"]["sha256"] == json.load(open(str(tmp_path / "g.card.json")))["sha256"]
    import hashlib
    assert card["sha256"] == hashlib.sha256(open(out, "rb").read()).hexdigest()


def test_a_graph_whose_values_overflow_fp16_is_refused(tmp_path):
    # (image * 1e6 * 1e6) minus itself: 0 in fp32, inf - inf = NaN in fp16.
    big = helper.make_tensor("big", TensorProto.FLOAT, [], [1e6])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["image", "big"], ["a"]), helper.make_node("Mul", ["a", "big"], ["b"]),
         helper.make_node("Sub", ["b", "b"], ["d"]),
         helper.make_node("ReduceMean", ["d"], ["c"], axes=[1], keepdims=1),
         helper.make_node("Sigmoid", ["c"], ["mask"])],
        "overflow", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, 32, 32])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["n", 1, 32, 32])], [big])
    src = str(tmp_path / "big.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    card_for(src)
    refused = run("bench/fp16.py", src, str(tmp_path / "big-fp16.onnx"), "--limit", "2")
    assert refused.returncode != 0
    assert "fp16 overflows" in refused.stderr and "keep it in fp32" in refused.stderr, refused.stderr
    assert not os.path.exists(str(tmp_path / "big-fp16.onnx")), "nothing written"
