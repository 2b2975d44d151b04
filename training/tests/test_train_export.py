"""One training step lowers the loss; ONNX export matches PyTorch; CLI end to end; the bundled
model honours the contract the Rust pipeline relies on."""
import hashlib
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from efen_train import evaluate, export, train
from efen_train.data import SegDataset, eval_transform, synthetic_items
from efen_train.losses import bce_dice_loss
from efen_train.model import EFEN

MODELS = os.path.join(os.path.dirname(__file__), "..", "..", "models")


def _batch(n=4, size=32):
    ds = SegDataset(synthetic_items(n, seed=3), eval_transform(size, size))
    xs, ys = zip(*(ds[i] for i in range(n)))
    return torch.stack(xs), torch.stack(ys)


def test_one_training_step_lowers_the_loss():
    torch.manual_seed(0)
    model = EFEN(width=0.0625)
    x, y = _batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.0)
    model.train()
    with torch.no_grad():
        before = float(bce_dice_loss(model(x), y))
    step_loss = train.train_step(model, opt, x, y)
    with torch.no_grad():
        after = float(bce_dice_loss(model(x), y))
    assert step_loss == pytest.approx(before, rel=1e-4)
    assert after < before


def test_export_parity_on_trained_weights(tmp_path):
    torch.manual_seed(0)
    model = EFEN(width=0.0625, pe_ref=(32, 32))    # positions on the training grid
    x, y = _batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):                       # trained weights and non-trivial BN statistics
        train.train_step(model, opt, x, y)
    path = str(tmp_path / "m.onnx")
    export.export_onnx(model, path, 32, 32)
    diffs = export.parity(model, path, [(32, 32), (48, 80), (96, 64)])
    assert max(diffs.values()) <= export.PARITY_BOUND == 1e-5, diffs
    inp = onnx.load(path).graph.input[0]
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]


def test_cli_train_export_evaluate_end_to_end(tmp_path):
    out = str(tmp_path / "run")
    common = ["--dataset", "synthetic", "--n-synthetic", "20"]
    report = train.main(common + ["--model-width", "0.0625", "--input-size", "32", "32",
                                  "--epochs", "2", "--optimizer", "adam", "--lr", "1e-3",
                                  "--gray-prob", "0.5", "--crop-scale", "0.8", "1.0",
                                  "--train-sizes", "32", "48", "--val-sizes", "32", "48",
                                  "--no-cross-attention", "--workers", "1", "--device", "cpu",
                                  "--out", out])
    assert report["epochs_run"] == 2 and report["test"]["n_images"] == 2
    assert report["stopped_by"] == "epochs" and set(report["val_by_size"]) == {"32x32", "48x48"}
    onnx_path = str(tmp_path / "tiny.onnx")
    card = export.main(["--checkpoint", os.path.join(out, "best.pt"), "--out", onnx_path,
                        "--sizes", "32", "48"])
    assert "without cross-attention" in card["architecture"]
    assert card["training"]["stopped_by"] == ["epochs"]
    cmd = card["training"]["commands"][-1]
    assert "--no-cross-attention" in cmd and "--no-pe" not in cmd and "--train-sizes 32 48" in cmd
    assert "--workers 1" in cmd and "--device cpu" in cmd
    assert set(card["test_metrics_by_size"]) == {"32x32", "48x48"}
    assert set(card["validation_metrics_by_size"]) == {"32x32", "48x48"}
    assert card["validated_input_sizes"] == [       # chosen on validation, not on test
        [int(v) for v in k.split("x")] for k, m in card["validation_metrics_by_size"].items()
        if m["dsc"] >= export.DSC_GOAL]
    saved = json.load(open(str(tmp_path / "tiny.card.json")))
    assert saved["sha256"] == hashlib.sha256(open(onnx_path, "rb").read()).hexdigest()
    assert saved["test_metrics"]["n_images"] == 2 and card["training"]["optimizer"] == "adam"
    meta = {p.key: p.value for p in onnx.load(onnx_path).metadata_props}
    assert json.loads(meta["model_card"])["input"]["name"] == "image"
    summary = evaluate.main(["--onnx", onnx_path, "--input-size", "32", "32"] + common)
    assert summary["mean_per_image"]["dsc"] == pytest.approx(
        saved["test_metrics"]["mean_per_image"]["dsc"], abs=1e-6)
    grey = evaluate.main(["--onnx", onnx_path, "--input-size", "32", "32", "--gray"] + common)
    assert grey["n_images"] == 2 and "grey" in grey["split"]


@pytest.mark.skipif(not os.path.exists(os.path.join(MODELS, "efen-small.card.json")),
                    reason="no bundled model yet")
def test_bundled_model_honours_its_card():
    card = json.load(open(os.path.join(MODELS, "efen-small.card.json")))
    path = os.path.join(MODELS, card["file"])
    assert card["sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest()
    for key in ["name", "architecture", "parameters", "flops_at_input", "input", "mean", "std",
                "output", "threshold", "training_data", "training", "test_metrics", "opset",
                "exported_by", "intended_use", "validated_input_sizes", "test_metrics_by_size"]:
        assert key in card, key
    assert card["input"]["name"] == "image" and card["output"]["name"] == "mask"
    assert card["output"]["activation"] == "sigmoid" and card["opset"] >= 17
    h, w = card["input"]["height"], card["input"]["width"]
    assert h % 16 == 0 and w % 16 == 0
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 3, h, w)).astype(np.float32)
    p = sess.run(["mask"], {"image": x})[0]
    assert p.shape == (2, 1, h, w) and p.dtype == np.float32
    assert 0.0 <= p.min() and p.max() <= 1.0
