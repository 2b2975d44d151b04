"""The evaluation loop: what the model is fed, and the --via-size diagnostic."""
import numpy as np

from efen_train.data import IMAGENET_MEAN, IMAGENET_STD
from efen_train.evaluate import evaluate_items


def _items():
    """Two 40x60 images whose right half is foreground (bright) in image and mask."""
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, 30:] = 255
    mask = np.zeros((40, 60), np.uint8)
    mask[:, 30:] = 1
    return [lambda: (img, mask)] * 2


def _bright_predictor(seen):
    """Foreground where the red input channel is bright; records each batch's shape."""
    def predict(batch):
        seen.append(batch.shape)
        return (batch[:, :1] > 0).astype(np.float32)
    return predict


def test_the_model_sees_the_input_size_and_via_enlarges_it():
    seen = []
    plain = evaluate_items(_bright_predictor(seen), _items(), (16, 32), IMAGENET_MEAN,
                           IMAGENET_STD)
    assert seen == [(2, 3, 16, 32)]
    seen.clear()
    via = evaluate_items(_bright_predictor(seen), _items(), (16, 32), IMAGENET_MEAN,
                         IMAGENET_STD, via=(48, 96))
    assert seen == [(2, 3, 48, 96)]
    # the masks come back at each image's own size either way: a clean edge scores near 1
    for s in (plain, via):
        assert s["n_images"] == 2 and s["mean_per_image"]["dsc"] > 0.95
