"""The training command's arguments: its parser, the model they describe, and the command line
that reproduces a checkpoint. Shared by train, export and onnx_init (which rebuilds a model from
the command on a card), so none of them imports another for them.
"""
import argparse

from .evaluate import add_data_args
from .model import EFEN


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="Train EFEN")
    add_data_args(ap)
    ap.add_argument("--model-width", type=float, default=1.0, help="channel multiplier")
    ap.add_argument("--min-channels", type=int, default=4,
                    help="floor under every scaled channel count (thin stages of small widths)")
    ap.add_argument("--vgg-bn", action="store_true",
                    help="BatchNorm after each conv of the VGG-19 encoder (torchvision's "
                         "vgg19_bn layout); for training from scratch")
    ap.add_argument("--attn-min-stride", type=int, default=8,
                    help="attention grid is never finer than input/this")
    ap.add_argument("--pretrained-vgg", default=None,
                    help="local torchvision vgg19 state-dict file (width 1 only; no download)")
    ap.add_argument("--init-from", default=None,
                    help="start from this checkpoint's weights (fine-tuning / continuing), or "
                         "from an exported .onnx file's (its card gives the architecture; "
                         "needs --freeze-bn)")
    ap.add_argument("--freeze-bn", action="store_true",
                    help="BatchNorm layers keep their statistics and run in eval mode while "
                         "training (their scale and shift still learn)")
    ap.add_argument("--bridge", action="store_true",
                    help="add the /16 bridge after E2 (not in the paper; off by default)")
    ap.add_argument("--no-pe", action="store_true", help="ablation: no positional encoding")
    ap.add_argument("--no-cross-attention", action="store_true",
                    help="ablation: skips pass FE' unfiltered (no cross-attention)")
    ap.add_argument("--no-reextraction", action="store_true",
                    help="ablation: U-Net with improved skips only (no E2/D2)")
    ap.add_argument("--pe-grid", default="train", choices=["train", "own"],
                    help="positions on the training grid (survives a change of size) or on "
                         "each map's own grid")
    ap.add_argument("--input-size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"),
                    help="the model's nominal (card) size; also the grid positions refer to")
    ap.add_argument("--train-sizes", type=int, nargs="+", default=None, metavar="S",
                    help="multi-scale training: each batch is drawn at one of these square "
                         "sizes (default: --input-size only)")
    ap.add_argument("--val-sizes", type=int, nargs="+", default=None, metavar="S",
                    help="validation loss = mean over these square sizes (default: "
                         "--input-size only)")
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
    ap.add_argument("--schedule", default="plateau", choices=["plateau", "cosine"],
                    help="learning rate: reduce on a validation plateau (the paper's), or a "
                         "cosine from --lr to --min-lr over --epochs")
    ap.add_argument("--plateau-patience", type=int, default=10)
    ap.add_argument("--plateau-factor", type=float, default=0.1)
    ap.add_argument("--min-lr", type=float, default=1e-7)
    ap.add_argument("--theta", type=float, default=1.0, help="Dice smoothing (eq. 11)")
    ap.add_argument("--max-minutes", type=float, default=0.0,
                    help="safety net only (0 = none): a run it stops is marked so in its "
                         "report and card; recipes stop on --epochs and --early-stop")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu",
                    help="torch device to train on: cpu, or cuda for a GPU (the tests run on "
                         "the CPU only)")
    ap.add_argument("--workers", type=int, default=0,
                    help="DataLoader worker processes for the augmentation, kept across "
                         "epochs so their caches of decoded images persist (0, as in every "
                         "recorded run: in the training process)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/efen")
    return ap.parse_args(argv)


def model_from_args(a) -> EFEN:
    return EFEN(a.model_width, a.attn_min_stride,
                pe_ref=tuple(a.input_size) if a.pe_grid == "train" else None,
                bridge=a.bridge, use_pe=not a.no_pe, cross_attention=not a.no_cross_attention,
                reextraction=not a.no_reextraction, min_channels=a.min_channels,
                vgg_bn=a.vgg_bn)


def train_command(args: dict) -> str:
    """The train command line that reproduces a checkpoint, rebuilt from its saved args."""
    parts = ["python -m efen_train.train"]
    for k, v in args.items():
        if v is None or v is False:
            continue
        if v is True:                                      # a store_true flag
            parts.append("--" + k.replace("_", "-"))
            continue
        flag = "--" + k.replace("_", "-")
        parts.append(f"{flag} {' '.join(map(str, v))}" if isinstance(v, (list, tuple))
                     else f"{flag} {v}")
    return " ".join(parts)
