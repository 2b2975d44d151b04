"""Train EFEN with the paper's recipe (every knob is a flag).

Defaults are the paper's: BCE + Dice (theta = 1), SGD, lr 1e-4, batch 8, up to 300 epochs,
early stopping and reduce-on-plateau on the validation loss, 8:1:1 split with a fixed seed,
on-the-fly augmentation.

    python -m efen_train.train --dataset synthetic --out runs/small            # paper defaults
    python -m efen_train.train --dataset cvc --data-root DATA/CVC-ClinicDB --model-width 1
"""
import argparse
import json
import os
import time

import numpy as np
import torch

from .data import (IMAGENET_MEAN, IMAGENET_STD, SegDataset, dataset_items, eval_transform,
                   split_811, train_transform)
from .evaluate import add_data_args, evaluate_items, torch_predictor
from .losses import bce_dice_loss
from .metrics import format_summary
from .model import EFEN, count_parameters, load_vgg19_weights


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="Train EFEN")
    add_data_args(ap)
    ap.add_argument("--model-width", type=float, default=1.0, help="channel multiplier")
    ap.add_argument("--attn-min-stride", type=int, default=8,
                    help="attention grid is never finer than input/this")
    ap.add_argument("--pretrained-vgg", default=None,
                    help="local torchvision vgg19 state-dict file (width 1 only; no download)")
    ap.add_argument("--init-from", default=None,
                    help="start from this checkpoint's weights (fine-tuning / continuing)")
    ap.add_argument("--input-size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"))
    ap.add_argument("--crop-scale", type=float, nargs=2, default=(0.4, 1.0),
                    metavar=("MIN", "MAX"), help="area range of the random resized crop")
    ap.add_argument("--gray-prob", type=float, default=0.0,
                    help="probability of a grey-scale training image (augmentation)")
    ap.add_argument("--optimizer", default="sgd", choices=["sgd", "adam", "adamw"])
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--early-stop", type=int, default=30,
                    help="stop after this many epochs without a better validation loss")
    ap.add_argument("--plateau-patience", type=int, default=10)
    ap.add_argument("--plateau-factor", type=float, default=0.1)
    ap.add_argument("--min-lr", type=float, default=1e-7)
    ap.add_argument("--theta", type=float, default=1.0, help="Dice smoothing (eq. 11)")
    ap.add_argument("--max-minutes", type=float, default=0.0, help="wall-clock budget, 0 = none")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/efen")
    return ap.parse_args(argv)


def make_optimizer(a, params):
    if a.optimizer == "sgd":
        return torch.optim.SGD(params, lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)
    cls = torch.optim.Adam if a.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=a.lr, weight_decay=a.weight_decay)


def train_step(model, opt, x, y, theta=1.0) -> float:
    model.train()
    opt.zero_grad(set_to_none=True)
    loss = bce_dice_loss(model(x), y, theta)
    loss.backward()
    opt.step()
    return loss.detach().item()


@torch.no_grad()
def validate(model, loader, theta=1.0) -> float:
    model.eval()
    losses = [float(bce_dice_loss(model(x), y, theta)) * len(x) for x, y in loader]
    return sum(losses) / len(loader.dataset)


def save_checkpoint(path, model, a, extra):
    ck = {"state_dict": model.state_dict(),
          "config": {"width": a.model_width, "attn_min_stride": a.attn_min_stride},
          "input_size": list(a.input_size), "mean": list(IMAGENET_MEAN),
          "std": list(IMAGENET_STD), "args": vars(a), **extra}
    tmp = path + ".tmp"
    torch.save(ck, tmp)
    os.replace(tmp, path)  # atomic: a reader never sees a half-written checkpoint


def main(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    h, w = a.input_size
    if h % 16 or w % 16:
        raise SystemExit(f"--input-size {h} {w}: both must be multiples of 16")

    items = dataset_items(a.dataset, a.data_root, a.n_synthetic, a.data_seed)
    tr, va, te = split_811(items, a.split_seed)
    cache = a.dataset == "synthetic"
    train_ds = SegDataset(tr, train_transform(h, w, a.crop_scale, a.gray_prob), cache=cache)
    val_ds = SegDataset(va, eval_transform(h, w), cache=cache)
    g = torch.Generator().manual_seed(a.seed)
    train_dl = torch.utils.data.DataLoader(train_ds, a.batch_size, shuffle=True, drop_last=True,
                                           generator=g)
    val_dl = torch.utils.data.DataLoader(val_ds, a.batch_size)

    model = EFEN(a.model_width, a.attn_min_stride)
    if a.pretrained_vgg:
        print(f"loaded {load_vgg19_weights(model, a.pretrained_vgg)} VGG-19 tensors")
    prior = {"seconds": 0.0, "epochs": 0}
    if a.init_from:
        init = torch.load(a.init_from, map_location="cpu", weights_only=False)
        model.load_state_dict(init["state_dict"])
        prior = _prior_training(a.init_from, init)
        print(f"initialised from {a.init_from} ({prior['epochs']} epochs, "
              f"{prior['seconds']:.0f} s before)")
    opt = make_optimizer(a, model.parameters())
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, factor=a.plateau_factor, patience=a.plateau_patience, min_lr=a.min_lr)
    print(f"EFEN width {a.model_width}: {count_parameters(model)} parameters; "
          f"{len(tr)}/{len(va)}/{len(te)} train/val/test")

    best, since_best, history, t0 = float("inf"), 0, [], time.time()
    best_path = os.path.join(a.out, "best.pt")
    for epoch in range(1, a.epochs + 1):
        train_loss = np.mean([train_step(model, opt, x, y, a.theta) for x, y in train_dl])
        val_loss = validate(model, val_dl, a.theta)
        sched.step(val_loss)
        elapsed = time.time() - t0
        history.append({"epoch": epoch, "train_loss": float(train_loss), "val_loss": val_loss,
                        "lr": opt.param_groups[0]["lr"], "seconds": round(elapsed, 1)})
        improved = val_loss < best
        print(f"epoch {epoch:3d} train {train_loss:.4f} val {val_loss:.4f} "
              f"lr {opt.param_groups[0]['lr']:.1e} {elapsed:6.0f}s{' *' if improved else ''}",
              flush=True)
        if improved:
            best, since_best = val_loss, 0
            save_checkpoint(best_path, model, a, {"epoch": epoch, "val_loss": val_loss,
                                                  "history": history, "seconds": elapsed,
                                                  "prior": prior})
        else:
            since_best += 1
        if since_best >= a.early_stop:
            print(f"early stop: no better validation loss for {a.early_stop} epochs")
            break
        if a.max_minutes and elapsed > a.max_minutes * 60:
            print(f"time budget of {a.max_minutes} min reached")
            break

    model, ck = _reload(best_path)
    summary = evaluate_items(torch_predictor(model), te, (h, w), IMAGENET_MEAN, IMAGENET_STD)
    summary["split"] = f"{a.dataset} test (8:1:1, split seed {a.split_seed})"
    print(format_summary(summary, summary["split"]))
    report = {"best_epoch": ck["epoch"], "epochs_run": len(history), "best_val_loss": best,
              "train_seconds": round(time.time() - t0, 1), "prior": prior,
              "total_epochs": prior["epochs"] + len(history),
              "total_train_seconds": round(prior["seconds"] + time.time() - t0, 1),
              "test": summary, "history": history}
    with open(os.path.join(a.out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report


def train_command(args: dict) -> str:
    """The train command line that reproduces a checkpoint, rebuilt from its saved args."""
    parts = ["python -m efen_train.train"]
    for k, v in args.items():
        if v is None:
            continue
        flag = "--" + k.replace("_", "-")
        parts.append(f"{flag} {' '.join(map(str, v))}" if isinstance(v, (list, tuple))
                     else f"{flag} {v}")
    return " ".join(parts)


def _prior_training(path, ck):
    """Epochs and seconds already spent on a checkpoint (from its run's report.json)."""
    rep = os.path.join(os.path.dirname(path), "report.json")
    commands = (ck.get("prior") or {}).get("commands", []) + [train_command(ck["args"])]
    if os.path.exists(rep):
        with open(rep) as f:
            r = json.load(f)
        return {"seconds": r.get("total_train_seconds", r["train_seconds"]),
                "epochs": r.get("total_epochs", r["epochs_run"]), "from": path,
                "commands": commands}
    return {"seconds": float(ck.get("seconds", 0.0)), "epochs": int(ck.get("epoch", 0)),
            "from": path, "commands": commands}


def _reload(path):
    from .evaluate import load_checkpoint
    return load_checkpoint(path)


if __name__ == "__main__":
    main()
