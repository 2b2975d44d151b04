"""Building blocks of EFEN: conv units, the sinusoidal positional encoding P(.) and the
improved skip connection R (paper eq. 5-9).

Everything here is written so that it traces to ONNX with dynamic H and W: the positional
encoding is computed from the feature map's own shape at run time (Range/Sin ops in the graph),
never from a table sized at construction time.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn_relu(c_in: int, c_out: int, k: int = 3) -> nn.Sequential:
    """k x k convolution (same padding) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def two_3x3_one_1x1(c_in: int, c_out: int) -> nn.Sequential:
    """The paper's recurring 'two 3x3 convs + one 1x1 conv' unit (Psi_D1, Psi_D2, op_E2)."""
    return nn.Sequential(conv_bn_relu(c_in, c_out, 3), conv_bn_relu(c_out, c_out, 3),
                         conv_bn_relu(c_out, c_out, 1))


def up2(x: torch.Tensor) -> torch.Tensor:
    """Parameter-free x2 bilinear up-sampling (the 'up-sampling' inside op2 and op3)."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class Up2(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return up2(x)


def positional_encoding(x: torch.Tensor, ref=None) -> torch.Tensor:
    """P(X): 2-D sinusoidal encoding of the spatial positions of x (N, C, H, W) -> (1, C, H, W).

    The first C//2 channels encode the row position, the remaining ones the column position,
    each as the Transformer's sin/cos pairs (paper Box 1): PE(pos, 2i) = sin(pos / 10000^(2i/c)),
    PE(pos, 2i+1) = cos(pos / 10000^(2i/c)). cos is written as sin(. + pi/2) so the graph is a
    single Sin.

    ref = (rows, cols) of this feature map at the training input size, or None. With ref, a
    position is measured on the training grid: pixel centre i of an n-long axis sits at
    (i + 0.5) * ref / n - 0.5, so at the training size the positions are the integer indices and
    at any other size the same place in the image gets the same code (DECISIONS 7). Without
    ref, positions are the integer indices of the map's own grid (the code then shifts with the
    input size).
    """
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    c_y = c // 2
    c_x = c - c_y

    def axis(n, c_axis, ref_n):
        i = torch.arange(c_axis, device=x.device, dtype=x.dtype)
        pair = torch.div(i, 2, rounding_mode="floor")
        freq = torch.exp(pair * (-2.0 * math.log(10000.0) / max(c_axis, 1)))
        phase = (i - 2 * pair) * (math.pi / 2)
        pos = torch.arange(n, device=x.device, dtype=x.dtype)
        if ref_n is not None:
            # n as a tensor (max index + 1) keeps the ONNX graph free of a traced constant
            pos = (pos + 0.5) * (float(ref_n) / (pos.max() + 1.0)) - 0.5
        return torch.sin(pos[:, None] * freq[None, :] + phase[None, :])  # (n, c_axis)

    ref_h, ref_w = ref if ref is not None else (None, None)
    pe_y = axis(h, c_y, ref_h).t()[:, :, None].expand(c_y, h, w)
    pe_x = axis(w, c_x, ref_w).t()[:, None, :].expand(c_x, h, w)
    return torch.cat([pe_y, pe_x], 0)[None]


class ImprovedSkip(nn.Module):
    """R (eq. 5-9): positional encoding + cross-attention skip connection.

    Inputs: FE, an encoder feature map (c_e channels), and FD, a decoder feature map (c_d
    channels). In the decoders FD is one level coarser than FE (the decoder input *before* its
    up-sampling Phi_D, `scale=2`); in the fusion of the input image with the first decoder's
    output both are on the same grid (`scale=1`: op1 without its max-pool, op2 and op3 without
    their up-sampling).

        FE' = FE + P(FE),  FD' = FD + P(FD)                                  (eq. 6-7)
        Q = FD' W_Q,  K = FD' W_K,  V = op1(FE') W_V                         (eq. 9)
        A = softmax(Q K^T / d_k),  d_k = channels of V                       (eq. 8)
        R = concat(FE' * op2(A V), op3(FD'))                                 (eq. 5)

    op1 = max-pool(2) + 1x1 conv + BN + ReLU   (brings FE' onto FD's grid)
    op2 = 1x1 conv + BN + ReLU + up-sampling    (AV back to FE's grid and channel count)
    op3 = up-sampling + 3x3 conv + 1x1 conv + BN + ReLU

    Ablations (paper Table 1): use_pe=False drops P(.) (FE' = FE, FD' = FD);
    cross_attention=False drops the attention, so FE' enters unfiltered as in a plain U-Net
    skip: R = concat(FE', op3(FD')).

    Memory bound: tokens are the positions of FD's grid. When that grid is finer than
    1/attn_min_stride of the input, Q, K and V are average-pooled by `pool` before the
    attention and A V is bilinearly up-sampled back, so A never has more than
    (H/attn_min_stride * W/attn_min_stride)^2 entries per image.

    pe_ref_e / pe_ref_d: the (rows, cols) of FE's and FD's grids at the training input size
    (see positional_encoding), or None for positions on the map's own grid.
    """

    def __init__(self, c_e: int, c_d: int, c_out: int, d_k: int, pool: int = 1, scale: int = 2,
                 use_pe: bool = True, cross_attention: bool = True, pe_ref_e=None,
                 pe_ref_d=None):
        super().__init__()
        self.d_k, self.pool, self.scale = d_k, pool, scale
        self.use_pe, self.cross_attention = use_pe, cross_attention
        self.pe_ref_e = tuple(pe_ref_e) if pe_ref_e is not None else None
        self.pe_ref_d = tuple(pe_ref_d) if pe_ref_d is not None else None
        up = [Up2()] if scale == 2 else []
        if cross_attention:
            down = [nn.MaxPool2d(2)] if scale == 2 else []
            self.op1 = nn.Sequential(*down, conv_bn_relu(c_e, d_k, 1))
            self.w_q = nn.Conv2d(c_d, d_k, 1, bias=False)
            self.w_k = nn.Conv2d(c_d, d_k, 1, bias=False)
            self.w_v = nn.Conv2d(d_k, d_k, 1, bias=False)
            self.op2 = nn.Sequential(conv_bn_relu(d_k, c_e, 1), *up)
        self.op3 = nn.Sequential(*up, nn.Conv2d(c_d, c_out, 3, padding=1, bias=False),
                                 conv_bn_relu(c_out, c_out, 1))
        self.out_channels = c_e + c_out

    def attend(self, fd_p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """A V on FD's grid (pooled to the attention grid when pool > 1)."""
        if self.pool > 1:
            fd_p = F.avg_pool2d(fd_p, self.pool)
            v = F.avg_pool2d(v, self.pool)
        b, _, h, w = v.shape
        q = self.w_q(fd_p).flatten(2).transpose(1, 2)          # (B, N, d_k)
        k = self.w_k(fd_p).flatten(2)                          # (B, d_k, N)
        a = torch.softmax(torch.bmm(q, k) * (1.0 / self.d_k), dim=-1)  # (B, N, N), eq. 8
        av = torch.bmm(a, v.flatten(2).transpose(1, 2))        # (B, N, d_k)
        av = av.transpose(1, 2).reshape(b, self.d_k, h, w)
        if self.pool > 1:
            av = F.interpolate(av, scale_factor=float(self.pool), mode="bilinear",
                               align_corners=False)
        return av

    def forward(self, fe: torch.Tensor, fd: torch.Tensor) -> torch.Tensor:
        fe_p = fe + positional_encoding(fe, self.pe_ref_e) if self.use_pe else fe
        fd_p = fd + positional_encoding(fd, self.pe_ref_d) if self.use_pe else fd
        if not self.cross_attention:
            return torch.cat([fe_p, self.op3(fd_p)], 1)
        v = self.w_v(self.op1(fe_p))
        av = self.attend(fd_p, v)
        return torch.cat([fe_p * self.op2(av), self.op3(fd_p)], 1)


class DecoderStage(nn.Module):
    """One decoder stage (eq. 2 / eq. 4):

        D_k = Psi_D(concat(Phi_D(D_{k-1}), R_D(E_k, D_{k-1})))

    Phi_D = 2x2 transposed convolution, stride 2; Psi_D = two 3x3 convs + one 1x1 conv.
    E_k is always a skip of the first encoder (VGG-19); nothing else enters the stage.
    `skip` holds the ImprovedSkip options (pool, use_pe, cross_attention, pe refs).
    """

    def __init__(self, c_d: int, c_e: int, c_out: int, **skip):
        super().__init__()
        self.phi = nn.ConvTranspose2d(c_d, c_out, 2, stride=2)
        self.r = ImprovedSkip(c_e, c_d, c_out, d_k=c_out, **skip)
        self.psi = two_3x3_one_1x1(c_out + self.r.out_channels, c_out)

    def forward(self, fd, fe):
        return self.psi(torch.cat([self.phi(fd), self.r(fe, fd)], 1))
