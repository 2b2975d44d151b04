"""Training continues from an exported ONNX file: the BN-folded weights load back into the
architecture and compute the same masks; --freeze-bn keeps them folded while training."""
import os

import pytest
import torch

from efen_train import export, onnx_init, train
from efen_train.model import EFEN

from test_train_export import _batch


def _trained_bn_model():
    torch.manual_seed(0)
    model = EFEN(width=0.0625, pe_ref=(32, 32), vgg_bn=True)
    x, y = _batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):                       # BN statistics far from their initial 0 / 1
        train.train_step(model, opt, x, y)
    return model.eval()


def test_folded_weights_load_back_and_compute_the_same_masks(tmp_path):
    model = _trained_bn_model()
    path = str(tmp_path / "m.onnx")
    export.export_onnx(model, path, 32, 32)
    torch.manual_seed(1)
    fresh = EFEN(width=0.0625, pe_ref=(32, 32), vgg_bn=True)
    n = onnx_init.load_folded_weights(fresh, path)
    assert n == sum(isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
                    for m in fresh.modules())
    x, _ = _batch(2, 48)
    with torch.no_grad():
        diff = (model(x) - fresh.eval()(x)).abs().max().item()
    assert diff <= 1e-4, diff
    with pytest.raises(ValueError, match="convolution"):
        onnx_init.load_folded_weights(EFEN(width=0.125, pe_ref=(32, 32), vgg_bn=True), path)


def test_training_continues_from_an_onnx_file_with_frozen_bn(tmp_path):
    common = ["--dataset", "synthetic", "--n-synthetic", "20", "--model-width", "0.0625",
              "--vgg-bn", "--input-size", "32", "32", "--optimizer", "adam", "--lr", "1e-3"]
    first = str(tmp_path / "first")
    train.main(common + ["--epochs", "1", "--out", first])
    onnx_path = str(tmp_path / "first.onnx")
    export.main(["--checkpoint", os.path.join(first, "best.pt"), "--out", onnx_path,
                 "--no-evaluate"])
    with pytest.raises(SystemExit, match="--freeze-bn"):
        train.main(common + ["--epochs", "1", "--init-from", onnx_path,
                             "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="architecture"):
        train.main(common + ["--epochs", "1", "--init-from", onnx_path, "--freeze-bn",
                             "--min-channels", "8", "--out", str(tmp_path / "y")])

    second = str(tmp_path / "second")
    report = train.main(common + ["--epochs", "1", "--init-from", onnx_path, "--freeze-bn",
                                  "--out", second])
    commands = report["prior"]["commands"]
    assert len(commands) == 2 and f"--out {first}" in commands[0]
    assert commands[1].startswith("python -m efen_train.export --checkpoint "
                                  f"{first}/best.pt") and "--input-size 32 32" in commands[1]
    assert report["prior"]["epochs"] == 1 and "sha256" in report["prior"]["from"]
    ck = torch.load(os.path.join(second, "best.pt"), weights_only=False)
    running_vars = [v for k, v in ck["state_dict"].items() if k.endswith("running_var")]
    assert running_vars and all(torch.allclose(v, torch.full_like(v, 1 - 1e-5))
                                for v in running_vars)           # frozen: still identity
    card = export.main(["--checkpoint", os.path.join(second, "best.pt"),
                        "--out", str(tmp_path / "second.onnx"), "--no-evaluate"])
    assert card["training"]["commands"][:2] == commands
    assert "--init-from" in card["training"]["commands"][2]
