"""Train EFEN with the paper's recipe (every knob is a flag).

Defaults are the paper's: BCE + Dice (theta = 1), SGD, lr 1e-4, batch 8, up to 300 epochs,
early stopping and reduce-on-plateau on the validation loss, 8:1:1 split with a fixed seed,
on-the-fly augmentation.

    python -m efen_train.train --dataset synthetic --out runs/small            # paper defaults
    python -m efen_train.train --dataset cvc --data-root DATA/CVC-ClinicDB --model-width 1
"""
import json
import os
import time

import numpy as np
import torch

from .data import (IMAGENET_MEAN, IMAGENET_STD, SegDataset, SizedBatches, dataset_items,
                   eval_transform, split_811, train_transform)
from .args import model_from_args, parse_args, train_command  # noqa: F401 (also efen_train.train's API)
from .evaluate import evaluate_items, metrics_by_size, torch_predictor
from .losses import bce_dice_loss
from .metrics import format_summary
from .model import EFEN, count_parameters, load_vgg19_weights  # noqa: F401


def make_optimizer(a, params):
    if a.optimizer == "sgd":
        return torch.optim.SGD(params, lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)
    cls = torch.optim.Adam if a.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=a.lr, weight_decay=a.weight_decay)


def train_step(model, opt, x, y, theta=1.0, freeze_bn=False) -> float:
    model.train()
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
    opt.zero_grad(set_to_none=True)
    loss = bce_dice_loss(model(x), y, theta)
    loss.backward()
    opt.step()
    return loss.detach().item()


@torch.no_grad()
def validate(model, loaders, theta=1.0) -> float:
    """Validation loss, averaged over the validation sizes (one loader per size)."""
    model.eval()
    device = next(model.parameters()).device
    per_size = []
    for loader in loaders:
        losses = [float(bce_dice_loss(model(x.to(device)), y.to(device), theta)) * len(x)
                  for x, y in loader]
        per_size.append(sum(losses) / len(loader.dataset))
    return float(np.mean(per_size))


def save_checkpoint(path, model, a, extra):
    ck = {"state_dict": model.state_dict(),
          "config": model.config,
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
    workers = {"num_workers": a.workers, "persistent_workers": a.workers > 0}
    if a.train_sizes:
        for s in a.train_sizes + (a.val_sizes or []):
            if s % 16:
                raise SystemExit(f"size {s}: must be a multiple of 16")
        train_ds = SegDataset(tr, lambda s: train_transform(s, s, a.crop_scale, a.gray_prob),
                              cache=cache)
        train_dl = torch.utils.data.DataLoader(
            train_ds, batch_sampler=SizedBatches(len(tr), a.batch_size, a.train_sizes, a.seed),
            **workers)
    else:
        train_ds = SegDataset(tr, train_transform(h, w, a.crop_scale, a.gray_prob), cache=cache)
        g = torch.Generator().manual_seed(a.seed)
        train_dl = torch.utils.data.DataLoader(train_ds, a.batch_size, shuffle=True,
                                               drop_last=True, generator=g, **workers)
    val_sizes = [(s, s) for s in a.val_sizes] if a.val_sizes else [(h, w)]
    val_cache = {} if cache else None
    val_dls = []
    for vh, vw in val_sizes:
        ds = SegDataset(va, eval_transform(vh, vw), cache=cache)
        ds.cache = val_cache                              # decode each validation image once
        val_dls.append(torch.utils.data.DataLoader(ds, a.batch_size))

    model = model_from_args(a)
    if a.pretrained_vgg:
        print(f"loaded {load_vgg19_weights(model, a.pretrained_vgg)} VGG-19 tensors")
    prior = {"seconds": 0.0, "epochs": 0}
    if a.init_from and a.init_from.endswith(".onnx"):
        model, prior = _init_from_onnx(a, model)
    elif a.init_from:
        init = torch.load(a.init_from, map_location="cpu", weights_only=False)
        model.load_state_dict(init["state_dict"])  # same architecture flags required
        prior = _prior_training(a.init_from, init)
        print(f"initialised from {a.init_from} ({prior['epochs']} epochs, "
              f"{prior['seconds']:.0f} s before)")
    model = model.to(a.device)
    opt = make_optimizer(a, model.parameters())
    if a.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs, eta_min=a.min_lr)
    else:
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, factor=a.plateau_factor, patience=a.plateau_patience, min_lr=a.min_lr)
    print(f"EFEN width {a.model_width}: {count_parameters(model)} parameters; "
          f"{len(tr)}/{len(va)}/{len(te)} train/val/test")

    best, since_best, history, t0 = float("inf"), 0, [], time.time()
    stopped_by = "epochs"
    best_path = os.path.join(a.out, "best.pt")
    for epoch in range(1, a.epochs + 1):
        train_loss = np.mean([train_step(model, opt, x, y, a.theta, a.freeze_bn)
                              for x, y in train_dl])
        val_loss = validate(model, val_dls, a.theta)
        sched.step() if a.schedule == "cosine" else sched.step(val_loss)
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
            stopped_by = "early-stop"
            break
        if a.max_minutes and elapsed > a.max_minutes * 60:
            print(f"SAFETY NET: --max-minutes {a.max_minutes} reached; the run is cut short")
            stopped_by = "max-minutes (safety net fired)"
            break

    model, ck = _reload(best_path)
    summary = evaluate_items(torch_predictor(model), te, (h, w), IMAGENET_MEAN, IMAGENET_STD)
    summary["split"] = f"{a.dataset} test (8:1:1, split seed {a.split_seed})"
    print(format_summary(summary, summary["split"]))
    # what runs and card sizes are chosen on: the validation split, never the test split
    val_by_size = metrics_by_size(torch_predictor(model), va, val_sizes, IMAGENET_MEAN,
                                  IMAGENET_STD)
    for k, m in val_by_size.items():
        print(f"validation {k}: DSC {m['dsc']:.4f}  IoU {m['iou']:.4f}")
    report = {"best_epoch": ck["epoch"], "epochs_run": len(history), "best_val_loss": best,
              "stopped_by": stopped_by, "val_by_size": val_by_size,
              "train_seconds": round(time.time() - t0, 1), "prior": prior,
              "total_epochs": prior["epochs"] + len(history),
              "total_train_seconds": round(prior["seconds"] + time.time() - t0, 1),
              "test": summary, "history": history}
    with open(os.path.join(a.out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report


def _prior_training(path, ck):
    """Epochs and seconds already spent on a checkpoint (from its run's report.json)."""
    rep = os.path.join(os.path.dirname(path), "report.json")
    commands = (ck.get("prior") or {}).get("commands", []) + [train_command(ck["args"])]
    if os.path.exists(rep):
        with open(rep) as f:
            r = json.load(f)
        stops = (r.get("prior") or {}).get("stopped_by", []) + [r.get("stopped_by", "?")]
        return {"seconds": r.get("total_train_seconds", r["train_seconds"]),
                "epochs": r.get("total_epochs", r["epochs_run"]), "from": path,
                "commands": commands, "stopped_by": stops}
    return {"seconds": float(ck.get("seconds", 0.0)), "epochs": int(ck.get("epoch", 0)),
            "from": path, "commands": commands}


def _init_from_onnx(a, model):
    """Weights from an exported file whose architecture equals this command's."""
    from .onnx_init import model_from_onnx, prior_of
    if not a.freeze_bn:
        raise SystemExit(f"--init-from {a.init_from}: an ONNX file holds BatchNorm folded into "
                         f"its convolutions; add --freeze-bn")
    loaded, card = model_from_onnx(a.init_from)
    if loaded.config != model.config:
        raise SystemExit(f"--init-from {a.init_from}: its architecture {loaded.config} differs "
                         f"from this command's {model.config}")
    prior = prior_of(a.init_from, card)
    print(f"initialised from {a.init_from} ({prior['epochs']} epochs, "
          f"{prior['seconds']:.0f} s before)")
    return loaded, prior


def _reload(path):
    from .evaluate import load_checkpoint
    return load_checkpoint(path)


if __name__ == "__main__":
    main()
