"""EFEN: U-Net with a VGG-19 encoder, feature re-extraction and improved skip connections.

Data flow (paper names; strides are relative to the input):

    x ─► E1 (VGG-19)  taps block1_conv2 /1, block2_conv2 /2, block3_conv4 /4, block4_conv4 /8,
    │                 bottleneck block5_conv4 /16
    │    D1 (eq. 2)   4 stages: Phi_D1 (transposed conv) + R_D1 + Psi_D1, widths 256,128,64,32
    │                 (the first U-Net's final 1x1 output conv is dropped)
    └──► fuse(x, D1 out) ─► E2 (eq. 3)  stage k: op_E2(concat(Phi_E2(E2_{k-1}), D1 map of
                                        the same size)), widths 32,64,128,256, then a bridge /16
                            D2 (eq. 4)  4 stages: Phi_D2 + R_D2(E1 skip, .) + E2 skip + Psi_D2
                            1x1 conv -> logits (sigmoid applied by `predict` / the export)

`width` scales every channel count (reduced variants); at width=1 the encoder is exactly
torchvision's vgg19().features, so ImageNet weights load from a local file.
"""
import torch
import torch.nn as nn

from .layers import DecoderStage, conv_bn_relu, two_3x3_one_1x1

VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
             512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
# indices in vgg19().features of the ReLUs after block1_conv2, block2_conv2, block3_conv4,
# block4_conv4 and block5_conv4 (the bottleneck)
VGG19_TAPS = (3, 8, 17, 26, 35)
DECODER_WIDTHS = (256, 128, 64, 32)
ENCODER2_WIDTHS = (32, 64, 128, 256)


def scaled(c: int, width: float) -> int:
    return max(4, int(round(c * width)))


class VGG19Encoder(nn.Module):
    """E1: `features` has the exact module indices of torchvision's vgg19().features."""

    def __init__(self, width: float = 1.0):
        super().__init__()
        layers, c_in = [], 3
        for v in VGG19_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                c = scaled(v, width)
                layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(inplace=True)]
                c_in = c
        self.features = nn.Sequential(*layers)
        self.channels = [self.features[i - 1].out_channels for i in VGG19_TAPS]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x):
        taps = []
        for i, layer in enumerate(self.features):
            if i > VGG19_TAPS[-1]:
                break
            x = layer(x)
            if i in VGG19_TAPS:
                taps.append(x)
        return taps  # [/1, /2, /4, /8, /16]


class EFEN(nn.Module):
    def __init__(self, width: float = 1.0, attn_min_stride: int = 8):
        super().__init__()
        self.width = width
        self.attn_min_stride = attn_min_stride
        self.encoder1 = VGG19Encoder(width)
        e1 = self.encoder1.channels                        # [64,128,256,512,512] * width
        dec = [scaled(c, width) for c in DECODER_WIDTHS]   # [256,128,64,32] * width
        enc2 = [scaled(c, width) for c in ENCODER2_WIDTHS]  # [32,64,128,256] * width

        def pool(fd_stride):
            return max(1, attn_min_stride // fd_stride)

        # First decoder D1: stage k takes D1_{k-1} at stride 16/2^k and E1 skip at 8/2^k.
        c_d = [e1[4]] + dec[:3]
        self.decoder1 = nn.ModuleList(
            DecoderStage(c_d[k], e1[3 - k], dec[k], pool(16 >> k)) for k in range(4))

        # Feature re-extraction: fuse the input with D1's output, then E2 (eq. 3).
        # Stage 1's Phi_E2 is a 3x3 conv on concat(x, D1_4); later ones are 2x2 max-pools.
        self.fuse = conv_bn_relu(3 + dec[3], enc2[0], 3)
        self.pool = nn.MaxPool2d(2)
        c_prev = [enc2[0]] + enc2[:3]
        d1_same = dec[::-1]                                # D1 widths at /1, /2, /4, /8
        self.op_e2 = nn.ModuleList(
            two_3x3_one_1x1(c_prev[k] + d1_same[k], enc2[k]) for k in range(4))
        bridge = scaled(256, width)
        self.bridge2 = nn.Sequential(conv_bn_relu(enc2[3], bridge), conv_bn_relu(bridge, bridge))

        # Second decoder D2 (eq. 4): R_D2 gets E1's skips, E2's skip is concatenated as is.
        c_d2 = [bridge] + dec[:3]
        self.decoder2 = nn.ModuleList(
            DecoderStage(c_d2[k], e1[3 - k], dec[k], pool(16 >> k), c_extra=enc2[3 - k])
            for k in range(4))
        self.head = nn.Conv2d(dec[3], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: normalised (N, 3, H, W), H and W multiples of 16. Returns logits (N, 1, H, W)."""
        e1 = self.encoder1(x)
        d, d1 = e1[4], []
        for k, stage in enumerate(self.decoder1):
            d = stage(d, e1[3 - k])
            d1.append(d)                                   # /8, /4, /2, /1
        e2 = []
        h = self.fuse(torch.cat([x, d1[3]], 1))            # Phi_E2 of stage 1
        for k, op in enumerate(self.op_e2):
            if k > 0:
                h = self.pool(h)                           # Phi_E2 of stages 2..4
            h = op(torch.cat([h, d1[3 - k]], 1))           # op_E2
            e2.append(h)                                   # /1, /2, /4, /8
        d = self.bridge2(self.pool(h))                     # /16
        for k, stage in enumerate(self.decoder2):
            d = stage(d, e1[3 - k], e2[3 - k])
        return self.head(d)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.forward(x))


class WithSigmoid(nn.Module):
    """Export wrapper: the ONNX graph outputs probabilities ("activation": "sigmoid")."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image):
        return torch.sigmoid(self.net(image))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_vgg19_weights(model: EFEN, path: str) -> int:
    """Load ImageNet VGG-19 weights from a *local* torchvision state-dict file into E1.

    Accepts a full vgg19 state dict ('features.N.weight', classifier ignored) or a bare
    features dict ('N.weight'). Never downloads. Returns the number of tensors loaded.
    """
    sd = torch.load(path, map_location="cpu", weights_only=True)
    sd = {k[len("features."):] if k.startswith("features.") else k: v for k, v in sd.items()
          if not k.startswith("classifier.")}
    model.encoder1.features.load_state_dict(sd, strict=True)  # layout mismatch -> error
    return len(sd)
