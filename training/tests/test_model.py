"""Shapes, parameter count, VGG-19 layout and the attention-memory bound."""
import torch

from efen_train.model import EFEN, VGG19_TAPS, count_parameters, load_vgg19_weights

FULL_WIDTH_PARAMS = 37_357_441   # see README "Parameters" for the reconciliation with Table 3
VGG19_FEATURES_PARAMS = 20_024_384
VGG19_CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]


def test_output_shapes_at_two_sizes():
    torch.manual_seed(0)
    model = EFEN(width=0.0625).eval()
    with torch.no_grad():
        for n, h, w in [(2, 32, 48), (1, 64, 64)]:
            y = model(torch.randn(n, 3, h, w))
            assert y.shape == (n, 1, h, w)
            p = model.predict(torch.randn(n, 3, h, w))
            assert float(p.min()) >= 0.0 and float(p.max()) <= 1.0


def test_full_width_parameter_count_and_vgg_layout(tmp_path):
    model = EFEN(width=1.0)          # construct only: no weights are downloaded
    assert count_parameters(model) == FULL_WIDTH_PARAMS
    assert count_parameters(model.encoder1) == VGG19_FEATURES_PARAMS
    feats = model.encoder1.features
    assert len(feats) == 37
    convs = [i for i, m in enumerate(feats) if isinstance(m, torch.nn.Conv2d)]
    assert convs == VGG19_CONV_INDICES
    assert all(isinstance(feats[i], torch.nn.ReLU) for i in VGG19_TAPS)
    # a torchvision-style vgg19 state dict (features.N.*, classifier.*) loads from a local file
    sd = {f"features.{k}": torch.full_like(v, 0.5) for k, v in feats.state_dict().items()}
    sd["classifier.0.weight"] = torch.zeros(2, 2)
    path = tmp_path / "vgg19.pth"
    torch.save(sd, path)
    assert load_vgg19_weights(model, str(path)) == 32
    assert float(feats[34].weight.mean()) == 0.5


def test_attention_grid_never_finer_than_one_eighth():
    model = EFEN(width=0.0625, attn_min_stride=8).eval()
    h, w = 96, 128
    grids = []
    for stage in list(model.decoder1) + list(model.decoder2):
        stage.r.w_q.register_forward_hook(lambda m, i, o: grids.append(o.shape[2] * o.shape[3]))
    with torch.no_grad():
        model(torch.randn(1, 3, h, w))
    assert len(grids) == 8
    assert max(grids) <= (h // 8) * (w // 8)
    assert [s.r.pool for s in model.decoder1] == [1, 1, 2, 4]
