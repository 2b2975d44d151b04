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


def positional_encoding(x: torch.Tensor) -> torch.Tensor:
    """P(X): 2-D sinusoidal encoding of the spatial positions of x (N, C, H, W) -> (1, C, H, W).

    The first C//2 channels encode the row index, the remaining ones the column index, each as
    the Transformer's sin/cos pairs: PE(pos, 2i) = sin(pos / 10000^(2i/c)),
    PE(pos, 2i+1) = cos(pos / 10000^(2i/c)). cos is written as sin(. + pi/2) so the graph is a
    single Sin. Positions are integer indices on the feature map's own grid.
    """
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    c_y = c // 2
    c_x = c - c_y

    def axis(n, c_axis):
        i = torch.arange(c_axis, device=x.device, dtype=x.dtype)
        pair = torch.div(i, 2, rounding_mode="floor")
        freq = torch.exp(pair * (-2.0 * math.log(10000.0) / max(c_axis, 1)))
        phase = (i - 2 * pair) * (math.pi / 2)
        pos = torch.arange(n, device=x.device, dtype=x.dtype)
        return torch.sin(pos[:, None] * freq[None, :] + phase[None, :])  # (n, c_axis)

    pe_y = axis(h, c_y).t()[:, :, None].expand(c_y, h, w)
    pe_x = axis(w, c_x).t()[:, None, :].expand(c_x, h, w)
    return torch.cat([pe_y, pe_x], 0)[None]


class ImprovedSkip(nn.Module):
    """R_D (eq. 5-9): positional encoding + cross-attention skip connection.

    Inputs: FE, an encoder feature map at resolution r (c_e channels), and FD, the decoder
    feature map one level coarser (r/2, c_d channels), i.e. the decoder input *before* its
    up-sampling Phi_D.

        FE' = FE + P(FE),  FD' = FD + P(FD)                                  (eq. 5-6)
        Q = FD' W_Q,  K = FD' W_K,  V = op1(FE') W_V                         (eq. 7)
        A = softmax(Q K^T / sqrt(d_k))                                       (eq. 8)
        R = concat(FE' * op2(A V), op3(FD'))                                 (eq. 9)

    op1 = max-pool(2) + 1x1 conv + BN + ReLU   (brings FE' onto FD's grid)
    op2 = 1x1 conv + BN + ReLU + up-sampling    (AV back to FE's grid and channel count)
    op3 = up-sampling + 3x3 conv + 1x1 conv + BN + ReLU
    The scaling is 1/sqrt(d_k) with d_k the width of Q and K (single head).

    Memory bound: tokens are the positions of FD's grid. When that grid is finer than
    1/attn_min_stride of the input, Q, K and V are average-pooled by `pool` before the
    attention and A V is bilinearly up-sampled back, so A never has more than
    (H/attn_min_stride * W/attn_min_stride)^2 entries per image.
    """

    def __init__(self, c_e: int, c_d: int, c_out: int, d_k: int, pool: int = 1):
        super().__init__()
        self.d_k = d_k
        self.pool = pool
        self.op1 = nn.Sequential(nn.MaxPool2d(2), conv_bn_relu(c_e, d_k, 1))
        self.w_q = nn.Conv2d(c_d, d_k, 1, bias=False)
        self.w_k = nn.Conv2d(c_d, d_k, 1, bias=False)
        self.w_v = nn.Conv2d(d_k, d_k, 1, bias=False)
        self.op2 = nn.Sequential(conv_bn_relu(d_k, c_e, 1), Up2())
        self.op3 = nn.Sequential(Up2(), nn.Conv2d(c_d, c_out, 3, padding=1, bias=False),
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
        a = torch.softmax(torch.bmm(q, k) * (1.0 / math.sqrt(self.d_k)), dim=-1)  # (B, N, N)
        av = torch.bmm(a, v.flatten(2).transpose(1, 2))        # (B, N, d_k)
        av = av.transpose(1, 2).reshape(b, self.d_k, h, w)
        if self.pool > 1:
            av = F.interpolate(av, scale_factor=float(self.pool), mode="bilinear",
                               align_corners=False)
        return av

    def forward(self, fe: torch.Tensor, fd: torch.Tensor) -> torch.Tensor:
        fe_p = fe + positional_encoding(fe)
        fd_p = fd + positional_encoding(fd)
        v = self.w_v(self.op1(fe_p))
        av = self.attend(fd_p, v)
        return torch.cat([fe_p * self.op2(av), self.op3(fd_p)], 1)


class DecoderStage(nn.Module):
    """One decoder stage (eq. 2 / eq. 4):

        D_k = Psi_D(concat(Phi_D(D_{k-1}), R_D(E_k, D_{k-1}) [, extra skip]))

    Phi_D = 2x2 transposed convolution, stride 2; Psi_D = two 3x3 convs + one 1x1 conv.
    `c_extra` is the plain skip from the second encoder used by the second decoder.
    """

    def __init__(self, c_d: int, c_e: int, c_out: int, pool: int, c_extra: int = 0):
        super().__init__()
        self.phi = nn.ConvTranspose2d(c_d, c_out, 2, stride=2)
        self.r = ImprovedSkip(c_e, c_d, c_out, d_k=c_out, pool=pool)
        self.psi = two_3x3_one_1x1(c_out + self.r.out_channels + c_extra, c_out)

    def forward(self, fd, fe, extra=None):
        parts = [self.phi(fd), self.r(fe, fd)]
        if extra is not None:
            parts.append(extra)
        return self.psi(torch.cat(parts, 1))
