"""A separable toy detection set on disk, for smoke tests, the tiny training config and CI.

Reals are smooth random textures; fakes are the same kind of texture with a faint period-2 pattern
added (a few grey levels: the checkerboard trace of a transposed-convolution decoder, which SRM residuals
expose and the eye hardly sees). Both classes share size distribution, brightness and format (PNG), so
neither is a shortcut. Layout:
CNNDetection (``<root>/<class>/{0_real,1_fake}/``) or GenImage (``<root>/{nature,ai}/``).

    python -m hyperdet_hf.toy_data OUT_DIR [--n_per_class 32] [--size 40] [--seed 0] [--layout cnndetection]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image


# A zero-mean 2x2 pattern per channel (the same for every fake image).
_CHECKER = np.array([[[1.0, 0.6, -0.8], [-1.0, -0.4, 0.9]], [[-0.7, -1.0, 0.5], [0.7, 0.8, -0.6]]], dtype=np.float32)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    noise = rng.normal(size=(h, w, 3)).astype(np.float32)
    smooth = gaussian_filter(noise, sigma=(1.2, 1.2, 0))
    smooth = (smooth - smooth.mean()) / (smooth.std() + 1e-6)
    base = rng.uniform(60, 190, size=3).astype(np.float32)
    return np.clip(base + 40.0 * smooth, 0, 255)


def toy_image(rng: np.random.Generator, label: int, h: int, w: int) -> np.ndarray:
    """One ``(h, w, 3)`` uint8 image of class ``label`` (0 real, 1 fake)."""
    arr = _texture(rng, h, w)
    if label == 1:
        amplitude = rng.uniform(3.0, 6.0)
        tile = np.tile(_CHECKER, ((h + 1) // 2, (w + 1) // 2, 1))[:h, :w]
        arr = np.clip(arr + amplitude * tile, 0, 255)
    return np.rint(arr).astype(np.uint8)


def make_toy_dataset(
    root: str | Path,
    n_per_class: int = 32,
    size: int = 40,
    seed: int = 0,
    layout: str = "cnndetection",
    classes: Sequence[str] = ("car", "cat"),
    size_jitter: int = 0,
) -> Path:
    """Write ``n_per_class`` real and fake PNGs under ``root`` and return it.

    ``size_jitter`` draws each side from ``size +- size_jitter`` (the same distribution for both classes),
    so that cropping and padding get exercised.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    names = {"cnndetection": ("0_real", "1_fake"), "genimage": ("nature", "ai")}
    if layout not in names:
        raise ValueError(f"layout: unknown {layout!r}; choose from {sorted(names)}")
    for label in (0, 1):
        for i in range(n_per_class):
            h, w = (int(size + rng.integers(-size_jitter, size_jitter + 1)) for _ in range(2))
            folder = root / names[layout][label] if layout == "genimage" else root / classes[i % len(classes)] / names[layout][label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(toy_image(rng, label, h, w)).save(folder / f"{label}_{i:05d}.png")
    return root


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hyperdet_hf.toy_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir")
    parser.add_argument("--n_per_class", type=int, default=32)
    parser.add_argument("--size", type=int, default=40)
    parser.add_argument("--size_jitter", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", default="cnndetection", choices=["cnndetection", "genimage"])
    args = parser.parse_args(argv)
    out = make_toy_dataset(args.output_dir, args.n_per_class, args.size, args.seed, args.layout, size_jitter=args.size_jitter)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
