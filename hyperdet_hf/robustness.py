"""Post-processing robustness (the paper's Figures 5-6): Gaussian blur sigma 1-4, JPEG quality 90-30 step 10.

A degradation acts on the decoded RGB image before the center crop, as in CNNDetection's and UnivFD's robustness
tests: blur is ``scipy.ndimage.gaussian_filter`` per channel (reflect borders, truncate 4 sigma; rounded back to
8 bits), JPEG is a PIL encode/decode at the given quality (4:2:0 chroma subsampling, PIL's default).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
from PIL import Image

from .results_table import MEAN_KEY, generator_keys, pct

BLUR_SIGMAS = (1.0, 2.0, 3.0, 4.0)
JPEG_QUALITIES = (90, 80, 70, 60, 50, 40, 30)
BLUR_KEY, JPEG_KEY, CLEAN_KEY = "gaussian_blur", "jpeg", "clean"


class GaussianBlur:
    """Gaussian blur with standard deviation ``sigma`` (pixels), per channel."""

    def __init__(self, sigma: float):
        if sigma < 0:
            raise ValueError(f"blur sigma must be >= 0, got {sigma}")
        self.sigma = float(sigma)

    def __call__(self, img: Image.Image) -> Image.Image:
        if self.sigma == 0:
            return img
        from scipy.ndimage import gaussian_filter

        arr = np.asarray(img.convert("RGB"), dtype=np.float32)
        out = np.stack([gaussian_filter(arr[..., c], sigma=self.sigma) for c in range(arr.shape[-1])], axis=-1)
        return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), mode="RGB")

    def __repr__(self):
        return f"blur:{self.sigma:g}"


class JpegCompression:
    """Re-encode as JPEG at ``quality`` (1-100) and decode again."""

    def __init__(self, quality: int):
        if not 1 <= int(quality) <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
        self.quality = int(quality)

    def __call__(self, img: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="JPEG", quality=self.quality)
        buf.seek(0)
        out = Image.open(buf)
        out.load()
        return out.convert("RGB")

    def __repr__(self):
        return f"jpeg:{self.quality}"


def parse_degradation(spec: str):
    """``"blur:SIGMA"`` or ``"jpeg:QUALITY"`` (also ``gaussian_blur:``, ``jpg:``) -> a picklable callable."""
    kind, _, value = spec.partition(":")
    kind = kind.strip().lower()
    try:
        if kind in ("blur", "gaussian_blur", "gauss"):
            return GaussianBlur(float(value))
        if kind in ("jpeg", "jpg"):
            return JpegCompression(int(value))
    except ValueError as exc:
        raise ValueError(f"degradation {spec!r}: {exc}") from None
    raise ValueError(f"degradation {spec!r}: expected blur:SIGMA or jpeg:QUALITY")


def robustness_sweep(
    model,
    processor,
    benchmark,
    *,
    blur_sigmas: Sequence[float] = BLUR_SIGMAS,
    jpeg_qualities: Sequence[int] = JPEG_QUALITIES,
    clean: Optional[Mapping] = None,
    **score_kwargs,
) -> dict:
    """Evaluate the benchmark clean and under each degradation.

    Returns ``{"clean": results, "gaussian_blur": {"1": results, ...}, "jpeg": {"90": results, ...}}`` where each
    ``results`` is ``results.json``-shaped. ``clean`` reuses an existing clean evaluation.
    """
    from .evaluation import evaluate_benchmark

    def run(degradation, desc):
        return evaluate_benchmark(model, processor, benchmark, degradation=degradation, desc=desc, **score_kwargs).results

    out = {CLEAN_KEY: dict(clean) if clean is not None else run(None, "clean"), BLUR_KEY: {}, JPEG_KEY: {}}
    for sigma in blur_sigmas:
        out[BLUR_KEY][f"{float(sigma):g}"] = run(GaussianBlur(sigma), f"blur sigma={sigma:g}")
    for quality in jpeg_qualities:
        out[JPEG_KEY][str(int(quality))] = run(JpegCompression(quality), f"jpeg q={int(quality)}")
    return out


def robustness_series(robustness: Mapping, kind: str, metric: str, generator: str = MEAN_KEY):
    """``(x, y)`` of one metric along one sweep: blur x = sigma with 0 = clean; JPEG x = quality with 100 = clean."""
    clean = robustness[CLEAN_KEY].get(generator, {}).get(metric)
    points = [(float(k), r.get(generator, {}).get(metric)) for k, r in robustness[kind].items()]
    points.append((0.0 if kind == BLUR_KEY else 100.0, clean))
    points.sort(key=lambda p: p[0], reverse=(kind == JPEG_KEY))
    return [p[0] for p in points], [p[1] for p in points]


def robustness_markdown(robustness: Mapping, method: str = "HyperDet") -> str:
    lines = [f"# Robustness of {method}", "",
             "Mean over generators of accuracy at P(fake) >= 0.5 and AP (%), clean and under each degradation "
             "(applied before the center crop).", "",
             "| setting | avg. Acc | mAP |", "|---|---:|---:|"]
    mean = robustness[CLEAN_KEY].get(MEAN_KEY, {})
    lines.append(f"| clean | {pct(mean.get('acc'))} | {pct(mean.get('ap'))} |")
    for kind, label in ((BLUR_KEY, "Gaussian blur sigma={}"), (JPEG_KEY, "JPEG quality={}")):
        for key, results in robustness[kind].items():
            m = results.get(MEAN_KEY, {})
            lines.append(f"| {label.format(key)} | {pct(m.get('acc'))} | {pct(m.get('ap'))} |")
    gens = generator_keys(robustness[CLEAN_KEY])
    lines += ["", f"{len(gens)} generators; per-generator numbers are in robustness.json.", ""]
    return "\n".join(lines)


def write_robustness(out_dir: str | os.PathLike, robustness: Mapping, *, method: str = "HyperDet", plots: bool = True) -> dict:
    """``robustness.json``, ``robustness.md`` and (with ``plots``) ``robustness_accuracy.png`` (Figure 5) and
    ``robustness_ap.png`` (Figure 6)."""
    from .evaluation import write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"robustness.json": write_json(out_dir / "robustness.json", robustness)}
    md = out_dir / "robustness.md"
    md.write_text(robustness_markdown(robustness, method), encoding="utf-8")
    files["robustness.md"] = md
    if plots:
        from .plots import plot_robustness

        files["robustness_accuracy.png"] = plot_robustness(robustness, "acc", out_dir / "robustness_accuracy.png", method=method)
        files["robustness_ap.png"] = plot_robustness(robustness, "ap", out_dir / "robustness_ap.png", method=method)
    return files
