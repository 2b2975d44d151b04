"""Shapes, parameter count, VGG-19 layout, the paper's wiring (eq. 3-4, 8), the positional
encoding on the training grid, the ablation variants and the attention-memory bound."""
import math

import pytest
import torch

from efen_train import train
from efen_train.layers import ImprovedSkip, positional_encoding
from efen_train.model import EFEN, VGG19_TAPS, count_parameters, load_vgg19_weights

FULL_WIDTH_PARAMS = 31_787_335   # see README "Parameters" for the reconciliation with Table 3
FULL_WIDTH_PARAMS_WITH_BRIDGE = 37_362_759
VGG19_FEATURES_PARAMS = 20_024_384
VGG19_CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]


def test_output_shapes_at_two_sizes():
    torch.manual_seed(0)
    model = EFEN(width=0.0625, pe_ref=(32, 48)).eval()
    with torch.no_grad():
        for n, h, w in [(2, 32, 48), (1, 64, 64)]:
            y = model(torch.randn(n, 3, h, w))
            assert y.shape == (n, 1, h, w)
            p = model.predict(torch.randn(n, 3, h, w))
            assert float(p.min()) >= 0.0 and float(p.max()) <= 1.0


def test_full_width_parameter_count_and_vgg_layout(tmp_path):
    model = EFEN(width=1.0)          # construct only: no weights are downloaded
    assert count_parameters(model) == FULL_WIDTH_PARAMS
    assert count_parameters(EFEN(width=1.0, bridge=True)) == FULL_WIDTH_PARAMS_WITH_BRIDGE
    assert count_parameters(model.encoder1) == VGG19_FEATURES_PARAMS
    feats = model.encoder1.features
    assert len(feats) == 37
    convs = [i for i, m in enumerate(feats) if isinstance(m, torch.nn.Conv2d)]
    assert convs == VGG19_CONV_INDICES
    assert all(isinstance(feats[i], torch.nn.ReLU) for i in VGG19_TAPS)
    assert model.encoder1.taps == list(VGG19_TAPS)
    # a torchvision-style vgg19 state dict (features.N.*, classifier.*) loads from a local file
    sd = {f"features.{k}": torch.full_like(v, 0.5) for k, v in feats.state_dict().items()}
    sd["classifier.0.weight"] = torch.zeros(2, 2)
    path = tmp_path / "vgg19.pth"
    torch.save(sd, path)
    assert load_vgg19_weights(model, str(path)) == 32
    assert float(feats[34].weight.mean()) == 0.5


def test_second_decoder_skips_come_only_from_the_first_encoder():
    model = EFEN(width=0.0625).eval()
    taps, seen = [], []
    model.encoder1.register_forward_hook(lambda m, i, o: taps.extend(o))
    for stage in model.decoder2:
        stage.r.register_forward_hook(lambda m, i, o: seen.append(i[0]))
        # Psi_D2 reads Phi_D2 and R_D2 only: no plain concatenation of E2's maps
        assert stage.psi[0][0].in_channels == stage.phi.out_channels + stage.r.out_channels
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert len(seen) == 3 and all(any(fe is t for t in taps) for fe in seen)
    assert [fe.shape[2] for fe in seen] == [16, 32, 64]      # E1 at /4, /2, /1


def test_input_fusion_is_an_improved_skip_and_phi_e2_has_its_own_weights():
    model = EFEN(width=0.0625)
    assert isinstance(model.fuse, ImprovedSkip) and model.fuse.scale == 1
    for k, phi in enumerate(model.phi_e2):
        convs = [m for m in phi.modules() if isinstance(m, torch.nn.Conv2d)]
        pools = [m for m in phi.modules() if isinstance(m, torch.nn.MaxPool2d)]
        relus = [m for m in phi.modules() if isinstance(m, torch.nn.ReLU)]
        assert len(convs) == 1 and len(relus) == 1 and len(pools) == (1 if k else 0)
    assert model.bridge2 is None                              # no /16 bridge unless asked
    assert EFEN(width=0.0625, bridge=True).bridge2 is not None


def test_attention_scales_by_d_k_as_eq_8():
    torch.manual_seed(0)
    r = ImprovedSkip(c_e=4, c_d=6, c_out=4, d_k=5).eval()
    fd = torch.randn(1, 6, 3, 2)
    v = torch.randn(1, 5, 3, 2)
    q = r.w_q(fd).flatten(2)[0].t()
    k = r.w_k(fd).flatten(2)[0]
    a = torch.softmax(q @ k / 5.0, dim=-1)                   # QK^T / d_k, d_k = channels of V
    expected = (a @ v.flatten(2)[0].t()).t().reshape(1, 5, 3, 2)
    with torch.no_grad():
        assert torch.allclose(r.attend(fd, v), expected, atol=1e-6)


def test_positions_are_measured_on_the_training_grid():
    x = torch.zeros(1, 4, 8, 6)
    own = positional_encoding(x)                              # integer indices: sin(i) in ch 0
    assert torch.allclose(own[0, 0, :, 0], torch.sin(torch.arange(8.0)), atol=1e-6)
    same = positional_encoding(x, ref=(8, 6))                 # at the training size: identical
    assert torch.allclose(same, own, atol=1e-6)
    big = positional_encoding(torch.zeros(1, 4, 16, 12), ref=(8, 6))
    pos = (torch.arange(16.0) + 0.5) * 0.5 - 0.5              # the same places on the 8-grid
    assert torch.allclose(big[0, 0, :, 0], torch.sin(pos), atol=1e-6)
    assert torch.allclose(big[0, 2, 0, :], torch.sin((torch.arange(12.0) + 0.5) * 0.5 - 0.5),
                          atol=1e-6)
    assert math.isclose(float(own[0, 1, 0, 0]), 1.0, abs_tol=1e-6)   # cos(0)


@pytest.mark.parametrize("flags,check", [
    (["--no-pe"], lambda m: all(not s.r.use_pe for s in m.decoder1) and not m.fuse.use_pe),
    (["--no-cross-attention"], lambda m: all(not hasattr(s.r, "w_q") for s in m.decoder2)),
    (["--no-reextraction"], lambda m: not hasattr(m, "decoder2") and not hasattr(m, "fuse")),
    (["--bridge"], lambda m: m.bridge2 is not None and len(m.decoder2) == 4),
])
def test_ablation_variants_build_and_run(flags, check):
    a = train.parse_args(["--model-width", "0.0625", "--input-size", "32", "32"] + flags)
    torch.manual_seed(0)
    model = train.model_from_args(a).eval()
    assert check(model)
    full = train.model_from_args(train.parse_args(["--model-width", "0.0625"]))
    assert count_parameters(model) != count_parameters(full) or flags == ["--no-pe"]
    with torch.no_grad():
        y = model(torch.randn(2, 3, 32, 48))
    assert y.shape == (2, 1, 32, 48) and torch.isfinite(y).all()
    # the variant is rebuilt from its checkpoint config (evaluate / export)
    assert count_parameters(EFEN(**model.config)) == count_parameters(model)


def test_attention_grid_never_finer_than_one_eighth():
    model = EFEN(width=0.0625, attn_min_stride=8).eval()
    h, w = 96, 128
    grids = []
    skips = [s.r for s in list(model.decoder1) + list(model.decoder2)] + [model.fuse]
    for r in skips:
        r.w_q.register_forward_hook(lambda m, i, o: grids.append(o.shape[2] * o.shape[3]))
    with torch.no_grad():
        model(torch.randn(1, 3, h, w))
    assert len(grids) == 8
    assert max(grids) <= (h // 8) * (w // 8)
    assert [s.r.pool for s in model.decoder1] == [1, 1, 2, 4]
    assert [s.r.pool for s in model.decoder2] == [1, 2, 4] and model.fuse.pool == 8


def test_vgg_bn_encoder_has_torchvisions_vgg19_bn_layout():
    """--vgg-bn: a BatchNorm after each of the 16 convs, taps at the same block ends."""
    model = EFEN(width=0.125, pe_ref=(64, 64), vgg_bn=True, min_channels=8)
    feats = model.encoder1.features
    assert len(feats) == 53                               # torchvision vgg19_bn().features
    assert model.encoder1.taps == [5, 12, 25, 38, 51]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in feats) == 16
    assert all(isinstance(feats[i], torch.nn.ReLU) for i in model.encoder1.taps)
    assert model(torch.randn(2, 3, 64, 96)).shape == (2, 1, 64, 96)
