"""Training augmentation: probabilities and ranges hold statistically; each operation does what it says;
the test-time transform is the forensic processor; every draw is a function of (seed, epoch, key)."""

import io

import numpy as np
import pytest
from PIL import Image
from scipy import stats
from scipy.ndimage import gaussian_filter

from hyperdet_hf import default_image_processor
from hyperdet_hf.augment import (
    AugmentConfig,
    AugmentParams,
    EvalTransform,
    TrainTransform,
    crop_or_pad,
    example_rng,
    normalize,
    sample_params,
)

N = 20000


def _draws(config, n=N, seed=0):
    rng = np.random.default_rng(seed)
    return [sample_params(config, rng) for _ in range(n)]


def _within(count, n, p, sigmas=5.0):
    return abs(count - n * p) <= sigmas * np.sqrt(n * p * (1 - p)) + 1


def test_paper_probabilities_and_ranges_hold():
    draws = _draws(AugmentConfig())  # the paper: blur and JPEG with p = 0.1, flip 0.5
    blurs = [d.blur_sigma for d in draws if d.blur_sigma is not None]
    qualities = [d.jpeg_quality for d in draws if d.jpeg_quality is not None]
    flips = sum(d.flip for d in draws)
    assert _within(len(blurs), N, 0.1) and _within(len(qualities), N, 0.1) and _within(flips, N, 0.5)
    # sigma ~ U(0, 3): inside the range and uniform (Kolmogorov-Smirnov)
    assert 0.0 <= min(blurs) and max(blurs) <= 3.0
    assert stats.kstest(blurs, stats.uniform(loc=0, scale=3).cdf).pvalue > 1e-3
    # quality ~ U{30..100}, bounds included: every value appears, chi-square against uniform
    assert all(isinstance(q, int) for q in qualities) and min(qualities) == 30 and max(qualities) == 100
    counts = np.bincount(np.asarray(qualities) - 30, minlength=71)
    assert (counts > 0).all() and stats.chisquare(counts).pvalue > 1e-3
    # blur and JPEG are drawn independently
    both = sum(d.blur_sigma is not None and d.jpeg_quality is not None for d in draws)
    assert _within(both, N, 0.01)
    # crop positions are uniform on [0, 1)
    us = [d.crop_u for d in draws]
    assert stats.kstest(us, "uniform").pvalue > 1e-3


@pytest.mark.parametrize("blur_prob, jpeg_prob, flip_prob", [(0.0, 1.0, 0.0), (1.0, 0.0, 1.0), (0.5, 0.3, 0.2)])
def test_configured_probabilities_hold(blur_prob, jpeg_prob, flip_prob):
    config = AugmentConfig(blur_prob=blur_prob, jpeg_prob=jpeg_prob, flip_prob=flip_prob, blur_sigma=(1, 2),
                           jpeg_quality=(60, 70))
    draws = _draws(config, n=5000, seed=3)
    blurs = [d.blur_sigma for d in draws if d.blur_sigma is not None]
    assert _within(len(blurs), 5000, blur_prob)
    assert _within(sum(d.jpeg_quality is not None for d in draws), 5000, jpeg_prob)
    assert _within(sum(d.flip for d in draws), 5000, flip_prob)
    assert all(1 <= s <= 2 for s in blurs)
    assert all(60 <= d.jpeg_quality <= 70 for d in draws if d.jpeg_quality is not None)


def test_draws_depend_only_on_seed_epoch_and_key():
    config = AugmentConfig(blur_prob=0.5, jpeg_prob=0.5)
    a = sample_params(config, example_rng(7, 2, "car/1_fake/x.png"))
    assert a == sample_params(config, example_rng(7, 2, "car/1_fake/x.png"))
    others = {sample_params(config, example_rng(7, e, "car/1_fake/x.png")) for e in range(20)}
    assert len(others) == 20  # a new epoch draws anew
    assert a != sample_params(config, example_rng(8, 2, "car/1_fake/x.png"))


@pytest.mark.parametrize(
    "values, field",
    [
        ({"blur_prob": 1.5}, "augment.blur_prob"),
        ({"flip_prob": -0.1}, "augment.flip_prob"),
        ({"blur_sigma": [3, 1]}, "augment.blur_sigma"),
        ({"blur_sigma": [-1, 1]}, "augment.blur_sigma"),
        ({"jpeg_quality": [0, 100]}, "augment.jpeg_quality"),
        ({"jpeg_quality": [30.5, 100]}, "augment.jpeg_quality"),
        ({"jpeg_quality": 50}, "augment.jpeg_quality"),
        ({"blur_probability": 0.1}, "unknown key"),
    ],
)
def test_bad_augment_settings_name_the_field(values, field):
    with pytest.raises(ValueError, match=field):
        AugmentConfig.from_dict(values)


def _image(h=40, w=48, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_each_operation_is_applied_as_drawn():
    img = _image()
    arr = np.asarray(img)
    t = TrainTransform(32, AugmentConfig())
    plain = AugmentParams(None, None, False, 0.0, 0.0)
    base = t.apply(img, plain)
    assert base.shape == (3, 32, 32) and base.dtype == np.float32
    np.testing.assert_allclose(base, normalize(arr[:32, :32]), atol=1e-6)
    # flip mirrors the crop
    flipped = t.apply(img, AugmentParams(None, None, True, 0.0, 0.0))
    np.testing.assert_array_equal(flipped, base[:, :, ::-1])
    # blur is scipy's per-channel Gaussian filter on the whole image, before the crop (CNNSpot order)
    blurred = t.apply(img, AugmentParams(2.0, None, False, 0.0, 0.0))
    reference = np.clip(np.rint(gaussian_filter(arr.astype(np.float32), sigma=(2, 2, 0))), 0, 255).astype(np.uint8)
    np.testing.assert_allclose(blurred, normalize(reference[:32, :32]), atol=1e-6)
    assert np.abs(np.diff(blurred, axis=2)).mean() < 0.5 * np.abs(np.diff(base, axis=2)).mean()
    # JPEG is a PIL encode/decode at the drawn quality
    jpeg = t.apply(img, AugmentParams(None, 35, False, 0.0, 0.0))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=35)
    decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    np.testing.assert_allclose(jpeg, normalize(decoded[:32, :32]), atol=1e-6)
    assert not np.allclose(jpeg, base)


def test_random_crop_covers_every_offset_uniformly():
    arr = np.arange(50, dtype=np.uint8).reshape(1, 50, 1).repeat(32, axis=0)  # column index as value
    rng = np.random.default_rng(0)
    offsets = [int(crop_or_pad(arr, 32, rng.random(), 0.0)[0, 0, 0]) for _ in range(19000)]
    counts = np.bincount(offsets, minlength=19)
    assert len(counts) == 19 and (counts > 0).all()  # offsets 0..18 (50 - 32), none beyond
    assert stats.chisquare(counts).pvalue > 1e-3


@pytest.mark.parametrize("h, w", [(20, 50), (32, 32), (45, 17), (7, 9)])
def test_small_images_are_padded_as_the_test_processor_pads(h, w):
    img = _image(h, w, seed=h * w)
    processor_out = default_image_processor(crop_size=32)(img, return_tensors="np")["pixel_values"][0]
    # with the crop at the centre of the free room, training sees what the processor gives
    u = ((w - 32) // 2 + 0.5) / (w - 32 + 1) if w > 32 else 0.0
    v = ((h - 32) // 2 + 0.5) / (h - 32 + 1) if h > 32 else 0.0
    out = TrainTransform(32).apply(img, AugmentParams(None, None, False, u, v))
    np.testing.assert_allclose(out, processor_out, atol=1e-5)


def test_eval_transform_is_the_forensic_processor():
    img = _image(50, 41, seed=5)
    expected = default_image_processor(crop_size=32)(img, return_tensors="np")["pixel_values"][0]
    out = EvalTransform(32)(img)
    assert out.shape == (3, 32, 32)
    np.testing.assert_array_equal(out, expected)
