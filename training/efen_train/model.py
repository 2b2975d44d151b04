"""EFEN: U-Net with a VGG-19 encoder, feature re-extraction and improved skip connections.

Data flow (paper names; strides are relative to the input):

    x ─► E1 (VGG-19)  taps block1_conv2 /1, block2_conv2 /2, block3_conv4 /4, block4_conv4 /8,
    │                 bottleneck block5_conv4 /16
    │    D1 (eq. 2)   4 stages: Phi_D1 (transposed conv) + R_D1 + Psi_D1, widths 256,128,64,32
    │                 (the first U-Net's final 1x1 output conv is dropped)
    └──► R_fuse(x, D1 out)  the input and D1's output fused by an improved skip connection
           E2 (eq. 3) stage k: op_E2(concat(Phi_E2(E2_{k-1} | W_E2_k), D1 map of the same size));
                      Phi_E2 = [2x2 max-pool] + 3x3 conv-BN-ReLU with its own weights,
                      widths 32,64,128,256 at /1,/2,/4,/8
           D2 (eq. 4) 3 stages from E2's /8 map: Phi_D2 + R_D2(E1 skip, .) + Psi_D2, widths
                      128,64,32 at /4,/2,/1 (skips only from E1, as the paper states)
           1x1 conv -> logits (sigmoid applied by `predict` / the export)

`bridge=True` adds the /16 block the paper does not describe (max-pool + two 3x3 convs after
E2) and a fourth D2 stage that takes E1's /8 skip; off by default.

Ablations (paper Table 1): use_pe=False (no positional encoding), cross_attention=False (the
skips pass FE' unfiltered), reextraction=False (U-Net with improved skips: D1 -> 1x1 conv).

`width` scales every channel count (reduced variants); at width=1 the encoder is exactly
torchvision's vgg19().features, so ImageNet weights load from a local file.
"""
import torch
import torch.nn as nn

from .layers import DecoderStage, ImprovedSkip, conv_bn_relu, two_3x3_one_1x1

VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
             512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
# indices in vgg19().features of the ReLUs after block1_conv2, block2_conv2, block3_conv4,
# block4_conv4 and block5_conv4 (the bottleneck)
VGG19_TAPS = (3, 8, 17, 26, 35)
DECODER_WIDTHS = (256, 128, 64, 32)
ENCODER2_WIDTHS = (32, 64, 128, 256)


def scaled(c: int, width: float, floor: int = 4) -> int:
    """c x width, rounded, never below `floor` channels (DECISIONS 14)."""
    return max(floor, int(round(c * width)))


class VGG19Encoder(nn.Module):
    """E1: `features` has the exact module indices of torchvision's vgg19().features, or of
    vgg19_bn().features with `batch_norm` (a BatchNorm after each conv, DECISIONS 13)."""

    def __init__(self, width: float = 1.0, min_channels: int = 4, batch_norm: bool = False):
        super().__init__()
        layers, c_in, self.taps = [], 3, []
        for v in VGG19_CFG:
            if v == "M":
                self.taps.append(len(layers) - 1)          # the ReLU that ends each block
                layers.append(nn.MaxPool2d(2, 2))
            else:
                c = scaled(v, width, min_channels)
                layers += [nn.Conv2d(c_in, c, 3, padding=1)]
                layers += [nn.BatchNorm2d(c)] if batch_norm else []
                layers += [nn.ReLU(inplace=True)]
                c_in = c
        self.features = nn.Sequential(*layers)
        convs = [m for m in layers if isinstance(m, nn.Conv2d)]
        self.channels = [convs[i].out_channels for i in (1, 3, 7, 11, 15)]  # block ends
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x):
        taps = []
        for i, layer in enumerate(self.features):
            if i > self.taps[-1]:
                break
            x = layer(x)
            if i in self.taps:
                taps.append(x)
        return taps  # [/1, /2, /4, /8, /16]


class EFEN(nn.Module):
    def __init__(self, width: float = 1.0, attn_min_stride: int = 8, pe_ref=None,
                 bridge: bool = False, use_pe: bool = True, cross_attention: bool = True,
                 reextraction: bool = True, min_channels: int = 4, vgg_bn: bool = False):
        """pe_ref: the training input size (H, W); positional codes are measured on that grid
        at every input size (DECISIONS 7). None: positions on each map's own grid.
        min_channels: the floor under every scaled channel count (DECISIONS 14).
        vgg_bn: E1 as VGG-19 with BatchNorm (DECISIONS 13)."""
        super().__init__()
        self.width = width
        self.attn_min_stride = attn_min_stride
        self.config = {"width": width, "attn_min_stride": attn_min_stride,
                       "pe_ref": list(pe_ref) if pe_ref is not None else None,
                       "bridge": bridge, "use_pe": use_pe, "cross_attention": cross_attention,
                       "reextraction": reextraction, "min_channels": min_channels,
                       "vgg_bn": vgg_bn}
        self.encoder1 = VGG19Encoder(width, min_channels, vgg_bn)
        e1 = self.encoder1.channels                        # [64,128,256,512,512] * width
        dec = [scaled(c, width, min_channels) for c in DECODER_WIDTHS]     # [256,128,64,32]
        enc2 = [scaled(c, width, min_channels) for c in ENCODER2_WIDTHS]  # [32,64,128,256]

        def skip(fe_stride, scale=2):
            """ImprovedSkip options for FE at fe_stride and FD at fe_stride * scale."""
            fd_stride = fe_stride * scale
            ref = (lambda s: (pe_ref[0] / s, pe_ref[1] / s)) if pe_ref is not None else (
                lambda s: None)
            return {"pool": max(1, attn_min_stride // fd_stride), "scale": scale,
                    "use_pe": use_pe, "cross_attention": cross_attention,
                    "pe_ref_e": ref(fe_stride), "pe_ref_d": ref(fd_stride)}

        # First decoder D1: stage k takes D1_{k-1} at stride 16/2^k and E1 skip at 8/2^k.
        c_d = [e1[4]] + dec[:3]
        self.decoder1 = nn.ModuleList(
            DecoderStage(c_d[k], e1[3 - k], dec[k], **skip(8 >> k)) for k in range(4))
        self.reextraction = reextraction
        if not reextraction:
            self.head = nn.Conv2d(dec[3], 1, 1)
            return

        # Fusion of the input with D1's output "using improved skip-connection" (same grid).
        self.fuse = ImprovedSkip(3, dec[3], enc2[0], d_k=enc2[0], **skip(1, scale=1))
        # E2 (eq. 3): Phi_E2 of stage k has its own weights W_E2_k (conv, pooling, ReLU).
        c_prev = [self.fuse.out_channels] + enc2[:3]
        self.phi_e2 = nn.ModuleList(
            nn.Sequential(*([nn.MaxPool2d(2)] if k > 0 else []),
                          conv_bn_relu(c_prev[k], enc2[k], 3)) for k in range(4))
        d1_same = dec[::-1]                                # D1 widths at /1, /2, /4, /8
        self.op_e2 = nn.ModuleList(
            two_3x3_one_1x1(enc2[k] + d1_same[k], enc2[k]) for k in range(4))

        # D2 (eq. 4): R_D2 takes only E1's skips. Without the bridge it starts from E2's /8 map.
        if bridge:
            b = scaled(256, width, min_channels)
            self.bridge2 = nn.Sequential(nn.MaxPool2d(2), conv_bn_relu(enc2[3], b),
                                         conv_bn_relu(b, b))
            c_d2, outs, strides = [b] + dec[:3], dec, [8, 4, 2, 1]
        else:
            self.bridge2 = None
            c_d2, outs, strides = [enc2[3]] + dec[1:3], dec[1:], [4, 2, 1]
        self.e1_skip_of_d2 = [{8: 3, 4: 2, 2: 1, 1: 0}[s] for s in strides]
        self.decoder2 = nn.ModuleList(
            DecoderStage(c_d2[k], e1[self.e1_skip_of_d2[k]], outs[k], **skip(s))
            for k, s in enumerate(strides))
        self.head = nn.Conv2d(dec[3], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: normalised (N, 3, H, W), H and W multiples of 16. Returns logits (N, 1, H, W)."""
        e1 = self.encoder1(x)
        d, d1 = e1[4], []
        for k, stage in enumerate(self.decoder1):
            d = stage(d, e1[3 - k])
            d1.append(d)                                   # /8, /4, /2, /1
        if not self.reextraction:
            return self.head(d)
        h = self.fuse(x, d1[3])                            # R(input, D1 output)
        for k in range(4):
            h = self.op_e2[k](torch.cat([self.phi_e2[k](h), d1[3 - k]], 1))  # E2_k, /1../8
        d = self.bridge2(h) if self.bridge2 is not None else h
        for stage, i in zip(self.decoder2, self.e1_skip_of_d2):
            d = stage(d, e1[i])
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
