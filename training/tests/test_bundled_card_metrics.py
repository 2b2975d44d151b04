"""The bundled card's per-size test metrics are what its ONNX file gives: recomputed here with
the repository's own evaluation code (ONNX Runtime, CPU) on the same held-out split."""
import json
import os

import pytest

from efen_train.data import dataset_items, split_811
from efen_train.evaluate import metrics_by_size, onnx_predictor

MODELS = os.path.join(os.path.dirname(__file__), "..", "..", "models")
TOLERANCE = 0.005
GOAL = 0.88


def test_card_metrics_by_size_are_reproduced_from_the_onnx_file():
    card = json.load(open(os.path.join(MODELS, "efen-small.card.json")))
    recorded = card["test_metrics_by_size"]
    sizes = [tuple(int(v) for v in k.split("x")) for k in recorded]
    assert sizes, "the card lists no per-size metrics"
    # the card's training data: the synthetic set and split the card names (n 800, seeds 0/42)
    assert "synthetic" in card["training_data"] and "seed 42" in card["training_data"]
    _, val, test = split_811(dataset_items("synthetic", n_synthetic=800, seed=0), 42)
    model = onnx_predictor(os.path.join(MODELS, card["file"]), threads=2)
    for split, items, recorded in [("test", test, card["test_metrics_by_size"]),
                                   ("validation", val, card["validation_metrics_by_size"])]:
        got = metrics_by_size(model, items, sizes, card["mean"], card["std"], card["threshold"])
        for key, want in recorded.items():
            assert got[key]["n_images"] == want["n_images"]
            assert got[key]["dsc"] == pytest.approx(want["dsc"], abs=TOLERANCE), (split, key)
            assert got[key]["iou"] == pytest.approx(want["iou"], abs=TOLERANCE), (split, key)
    # validated_input_sizes: exactly the measured sizes that meet the goal on validation
    val_dsc = card["validation_metrics_by_size"]
    assert card["validated_input_sizes"] == [
        list(s) for s in sizes if val_dsc[f"{s[0]}x{s[1]}"]["dsc"] >= GOAL]
