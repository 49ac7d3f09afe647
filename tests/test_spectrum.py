"""Mean Fourier spectra of images and SRM residuals (Figures 3, 9): artifacts show up, low frequencies drop."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from hyperdet_hf.spectrum import PANELS, expand_inputs, mean_spectra

from .eval_helpers import run_cli

N = 64


def _natural(rng) -> np.ndarray:
    """A smooth random field (most energy at low frequencies) with a little sensor-like noise."""
    field = gaussian_filter(rng.normal(size=(N, N)), 3)
    field = (field - field.min()) / (field.max() - field.min()) * 180 + 30
    img = np.stack([field, field * 0.9 + 10, field * 0.8 + 20], -1) + rng.normal(0, 2, (N, N, 3))
    return img


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("spectrum")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:N, 0:N]
    grid = ((xx % 4 < 2) ^ (yy % 4 < 2)).astype(np.float64)  # a period-4 pattern, like an upsampling trace
    for name in ("real", "fake"):
        (base / name).mkdir()
    for i in range(6):
        img = _natural(rng)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(base / "real" / f"{i}.png")
        Image.fromarray(np.clip(img + 6 * grid[..., None], 0, 255).astype(np.uint8)).save(base / "fake" / f"{i}.png")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(base / "fake" / "small.png")
    (base / "fake" / "broken.png").write_bytes(b"nope")
    return base


def _peak(spec) -> float:
    """log10 power at the pattern's frequency (N/4, N/4) above the median of its 7x7 neighbourhood."""
    c = N // 2 + N // 4
    return float(spec[c, c] - np.median(spec[c - 3 : c + 4, c - 3 : c + 4]))


def test_artifact_peak_and_low_frequency_suppression(folders):
    real, n_real, skipped_real = mean_spectra(expand_inputs([str(folders / "real")])[0], size=N)
    fake, n_fake, skipped_fake = mean_spectra(expand_inputs([str(folders / "fake")])[0], size=N)
    assert (n_real, n_fake) == (6, 6) and skipped_real == []
    assert sorted((p.split("/")[-1], r) for p, r in skipped_fake) == [("broken.png", "not-an-image"), ("small.png", "smaller-than-64")]
    assert list(real) == list(PANELS) and all(s.shape == (N, N) for s in real.values())
    for name in PANELS:
        assert _peak(fake[name]) > 2.0, name  # 100x above the neighbourhood in every panel
        assert _peak(real[name]) < 1.0, name

    def low_minus_high(spec):
        c = N // 2
        low = spec[c - 2 : c + 3, c - 2 : c + 3].mean()
        high = np.concatenate([spec[:4].ravel(), spec[-4:].ravel(), spec[:, :4].ravel(), spec[:, -4:].ravel()]).mean()
        return low - high

    for name in PANELS[1:]:  # the SRM residuals suppress the low frequencies of the original
        assert low_minus_high(real[name]) < low_minus_high(real["original"]) - 2.0, name


def test_spectrum_command(folders, tmp_path):
    png, npz = tmp_path / "spec.png", tmp_path / "spec.npz"
    proc = run_cli(["spectrum", folders / "real", folders / "fake", "--output", png, "--npz", npz, "--size", N])
    assert proc.returncode == 0, proc.stderr
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 2 * im.height  # six panels side by side, two rows
    arrays = np.load(npz)
    assert sorted(arrays.files) == sorted(f"{row}/{p}" for row in ("real", "fake") for p in PANELS)
    assert _peak(arrays["fake/srm_group_3"]) > 2.0
    assert "small.png: smaller-than-64" in proc.stderr and "broken.png: not-an-image" in proc.stderr


def test_default_row_labels_are_unique():
    from hyperdet_hf.spectrum import default_labels

    assert default_labels([["data/tconv/1_fake"], ["data/pixel_shuffle/1_fake/"], ["data/real"]]) == [
        "tconv/1_fake", "pixel_shuffle/1_fake", "real"]
    assert default_labels([["a/x"], ["a/x"]]) == ["a/x (1)", "a/x (2)"]
