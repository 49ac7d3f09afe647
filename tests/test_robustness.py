"""Robustness sweep (Figures 5-6): degradations, files, and numbers equal to a direct evaluation."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from hyperdet_hf.evaluation import EvalConfig, run_evaluation
from hyperdet_hf.robustness import GaussianBlur, JpegCompression, parse_degradation, robustness_series

from .eval_helpers import save_tiny_model, write_images


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("robust")
    model = save_tiny_model(base / "model", seed=1)
    rng = np.random.default_rng(11)
    bench = base / "bench"
    for gen in ("progan", "ldm_200"):
        write_images(bench / gen / "0_real", 5, False, rng, size=(36, 40))
        write_images(bench / gen / "1_fake", 5, True, rng, size=(36, 40))
    out = base / "out"
    run = run_evaluation(EvalConfig(model=str(model), data=[str(bench)], output_dir=str(out), robustness=True,
                                    dtype="float32", batch_size=8, num_workers=0, progress=False))
    return model, bench, out, run


def test_degradations_are_the_usual_ones():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (30, 34, 3)).astype(np.uint8))
    arr = np.asarray(img, dtype=np.float32)
    blurred = np.asarray(GaussianBlur(2)(img))
    want = np.stack([gaussian_filter(arr[..., c], sigma=2) for c in range(3)], -1)
    np.testing.assert_array_equal(blurred, np.clip(np.rint(want), 0, 255).astype(np.uint8))
    assert np.asarray(GaussianBlur(0)(img)).tolist() == np.asarray(img).tolist()
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=40)
    np.testing.assert_array_equal(np.asarray(JpegCompression(40)(img)), np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    assert isinstance(parse_degradation("blur:1.5"), GaussianBlur) and parse_degradation("jpeg:70").quality == 70
    for bad in ("jpeg:0", "blur:-1", "sharpen:2", "jpeg:x"):
        with pytest.raises(ValueError):
            parse_degradation(bad)


def test_sweep_files_and_settings(setup):
    _, _, out, run = setup
    rob = json.loads((out / "robustness.json").read_text())
    assert list(rob) == ["clean", "gaussian_blur", "jpeg"]
    assert list(rob["gaussian_blur"]) == ["1", "2", "3", "4"]
    assert list(rob["jpeg"]) == ["90", "80", "70", "60", "50", "40", "30"]
    assert rob["clean"] == json.loads((out / "results.json").read_text())
    for kind in ("gaussian_blur", "jpeg"):
        for results in rob[kind].values():
            assert set(results) == {"progan", "ldm_200", "mean"}
            assert results["progan"]["n_real"] == 5 and results["progan"]["n_fake"] == 5
    # degradations change the scores (else the sweep would be a no-op)
    assert rob["gaussian_blur"]["4"]["mean"]["ap"] != rob["clean"]["mean"]["ap"] or \
        rob["gaussian_blur"]["4"]["mean"]["acc"] != rob["clean"]["mean"]["acc"]
    for name in ("robustness_accuracy.png", "robustness_ap.png", "per_generator.png"):
        with Image.open(out / name) as png:
            assert png.format == "PNG" and png.width > 400 and png.height > 200
    md = (out / "robustness.md").read_text()
    assert "JPEG quality=30" in md and "Gaussian blur sigma=4" in md
    x, y = robustness_series(rob, "jpeg", "acc")
    assert x == [100.0, 90.0, 80.0, 70.0, 60.0, 50.0, 40.0, 30.0]
    assert y[0] == rob["clean"]["mean"]["acc"] and y[-1] == rob["jpeg"]["30"]["mean"]["acc"]


@pytest.mark.parametrize("kind,key,suffix", [("jpeg", "50", ".jpg"), ("gaussian_blur", "2", ".png")])
def test_sweep_numbers_equal_direct_evaluation_of_degraded_files(setup, tmp_path, kind, key, suffix):
    """Degrade the files on disk with PIL/scipy, evaluate them clean: same numbers as the sweep's entry."""
    model, bench, out, _ = setup
    rob = json.loads((out / "robustness.json").read_text())
    copy = tmp_path / "bench"
    for src in sorted(bench.rglob("*.png")):
        dst = (copy / src.relative_to(bench)).with_suffix(suffix)
        dst.parent.mkdir(parents=True, exist_ok=True)
        img = Image.open(src).convert("RGB")
        if kind == "jpeg":
            img.save(dst, format="JPEG", quality=int(key))
        else:
            arr = np.asarray(img, dtype=np.float32)
            blurred = np.stack([gaussian_filter(arr[..., c], sigma=float(key)) for c in range(3)], -1)
            Image.fromarray(np.clip(np.rint(blurred), 0, 255).astype(np.uint8)).save(dst)
    direct = tmp_path / "direct"
    run_evaluation(EvalConfig(model=str(model), data=[str(copy)], output_dir=str(direct), dtype="float32",
                              batch_size=8, num_workers=0, progress=False, plots=False))
    got = json.loads((direct / "results.json").read_text())
    want = rob[kind][key]
    for gen in ("progan", "ldm_200", "mean"):
        for metric in ("acc", "real_acc", "fake_acc", "ap", "auc", "n_real", "n_fake"):
            assert got[gen][metric] == pytest.approx(want[gen][metric], abs=1e-9), (gen, metric)


def test_single_degradation_option_equals_sweep_entry(setup, tmp_path):
    model, bench, out, _ = setup
    rob = json.loads((out / "robustness.json").read_text())
    run = run_evaluation(EvalConfig(model=str(model), data=[str(bench)], output_dir=str(tmp_path / "d"), dtype="float32",
                                    degradation="jpeg:70", batch_size=8, num_workers=0, progress=False, plots=False))
    assert json.loads(json.dumps(run["results"])) == rob["jpeg"]["70"]
    assert json.loads((tmp_path / "d" / "eval_info.json").read_text())["degradation"] == "jpeg:70"
