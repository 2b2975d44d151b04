"""Continue training from an exported EFEN ONNX file, when its checkpoint is gone.

Checkpoints live in the git-ignored `runs/`; the bundled model's ONNX file is what a new
machine has. The export folds each BatchNorm into the convolution before it
(W' = W * g / s, b' = (b - mu) * g / s + beta, s = sqrt(var + eps)), so the file holds one
weight and one bias per convolution. This loads them back into the same architecture, read from
the last training command on the file's card, with every BatchNorm set to the identity plus the
folded bias (mean 0, variance 1 - eps, weight 1): the same function in eval mode, checked
against ONNX Runtime before it is returned.

Train such a model with `--freeze-bn`: in train mode a BatchNorm normalises by the batch's
statistics and would undo the folded scales.
"""
import json
import shlex

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper

MATCH_BOUND = 1e-4   # max |p_torch - p_onnxruntime| after loading


def read_card(path: str) -> dict:
    """The model card stored in the graph's metadata (see export.py)."""
    meta = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    if "model_card" not in meta:
        raise SystemExit(f"{path}: no model_card in the ONNX metadata (not exported by "
                         f"efen_train.export)")
    return json.loads(meta["model_card"])


def train_args_of(card: dict, path: str):
    """The parsed arguments of the last training command on the card (the architecture)."""
    from .args import parse_args
    commands = (card.get("training") or {}).get("commands") or []
    if not commands:
        raise SystemExit(f"{path}: the card records no training command")
    argv = shlex.split(commands[-1])
    return parse_args(argv[argv.index("efen_train.train") + 1:])


def export_command(card: dict, path: str) -> str:
    """The export step between the card's last training run and this file."""
    a = train_args_of(card, path)
    h, w = card["input"]["height"], card["input"]["width"]
    return (f"python -m efen_train.export --checkpoint {a.out}/best.pt "
            f"--out ../models/{card['file']} --input-size {h} {w}")


def _bn_after_conv(model: nn.Module) -> dict:
    """conv module -> the BatchNorm that directly follows it in a Sequential."""
    after = {}
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            kids = list(seq)
            for a, b in zip(kids, kids[1:]):
                if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                    after[a] = b
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    if len(after) != n_bn:
        raise ValueError(f"{n_bn - len(after)} BatchNorm layers do not follow a convolution")
    return after


def _convs_in_call_order(model: nn.Module, h: int, w: int) -> list:
    """Conv and transposed-conv modules in the order a forward pass calls them: the order in
    which the exporter's trace wrote their nodes."""
    order = []
    hooks = [m.register_forward_hook(lambda m, i, o: order.append(m)) for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, h, w))
    for hk in hooks:
        hk.remove()
    return order


def _onnx_convs(path: str) -> list:
    """(weight, bias or None) of each Conv/ConvTranspose node, in graph order."""
    g = onnx.load(path).graph
    const = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            const[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        elif n.op_type == "Identity" and n.input[0] in const:
            const[n.output[0]] = const[n.input[0]]
    out = []
    for n in g.node:
        if n.op_type in ("Conv", "ConvTranspose"):
            bias = const[n.input[2]] if len(n.input) > 2 and n.input[2] else None
            out.append((const[n.input[1]], bias))
    return out


@torch.no_grad()
def load_folded_weights(model: nn.Module, path: str, h: int = 64, w: int = 64) -> int:
    """Put the ONNX file's (BN-folded) conv weights into `model`. Returns the number of
    convolutions loaded; raises when the graph and the model do not line up."""
    convs = _convs_in_call_order(model, h, w)
    saved = _onnx_convs(path)
    if len(convs) != len(saved):
        raise ValueError(f"{path}: {len(saved)} convolutions in the graph, {len(convs)} in the "
                         f"model")
    bn_of = _bn_after_conv(model)
    for i, (conv, (wt, bias)) in enumerate(zip(convs, saved)):
        if tuple(conv.weight.shape) != wt.shape:
            raise ValueError(f"{path}: convolution {i} is {wt.shape} in the graph, "
                             f"{tuple(conv.weight.shape)} in the model")
        conv.weight.copy_(torch.tensor(wt))
        b = torch.tensor(bias) if bias is not None else torch.zeros(wt.shape[
            1 if isinstance(conv, nn.ConvTranspose2d) else 0])
        bn = bn_of.get(conv)
        if bn is None:
            if conv.bias is None:
                if bias is not None and np.abs(bias).max() > 0:
                    raise ValueError(f"{path}: convolution {i} has a bias in the graph only")
            else:
                conv.bias.copy_(b)
            continue
        if conv.bias is not None:
            conv.bias.zero_()
        bn.weight.fill_(1.0)
        bn.bias.copy_(b)
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)                # (y - 0) / sqrt(1) + b
    return len(convs)


def model_from_onnx(path: str):
    """(model in eval mode, card) from an EFEN ONNX file and its card."""
    from .export import parity
    from .args import model_from_args
    card = read_card(path)
    model = model_from_args(train_args_of(card, path))
    load_folded_weights(model, path)
    size = (card["input"]["height"], card["input"]["width"])
    diff = max(parity(model, path, [size]).values())      # ONNX Runtime, graph as exported
    if diff > MATCH_BOUND:
        raise ValueError(f"{path}: the loaded weights differ from ONNX Runtime by {diff:.2e}")
    return model.eval(), card


def prior_of(path: str, card: dict) -> dict:
    """The training behind an ONNX file, in the shape of train._prior_training's answer."""
    from .export import sha256
    t = card.get("training") or {}
    return {"seconds": float(t.get("seconds") or 0.0), "epochs": int(t.get("epochs") or 0),
            "from": f"{path} (sha256 {sha256(path)[:16]}; BN-folded weights from the ONNX file)",
            "commands": list(t.get("commands", [])) + [export_command(card, path)],
            "stopped_by": list(t.get("stopped_by", []))}
