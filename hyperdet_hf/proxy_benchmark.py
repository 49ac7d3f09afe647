"""An embedded proxy benchmark: real photo crops against simulated generator families, built on the fly.

Real images are crops of the photographs that scikit-image and scikit-learn ship. Fakes follow AutoGAN
(Zhang et al. 2019, the paper's FreqSpec baseline): a real crop is downsampled by 2 and pushed back up
through a generator-style upsampling decoder. Each family is one "generator" folder in the CNNDetection
layout. Real and fake files have the same format (PNG) and size, so neither is a shortcut.

Families (the decoder of each has fixed random weights drawn from the seed):
- ``nn_conv``: nearest-neighbour upsampling then a 3x3 conv (adds blocky high frequencies);
- ``tconv``: a stride-2 transposed conv (uneven kernel overlap: checkerboard);
- ``bilinear_conv``: bilinear upsampling then a 3x3 conv (smooths);
- ``pixel_shuffle``: a conv to 4x channels then pixel shuffle (sub-pixel phases differ: periodic pattern);
- ``bicubic``: plain bicubic upsampling (smooths, no learned layer).

The default split trains on one family that adds high-frequency energy and one that smooths (detectors
trained on only one kind call the other kind real, see DESIGN.md) and tests on all five.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

FAMILIES = ("nn_conv", "tconv", "bilinear_conv", "pixel_shuffle", "bicubic")
SEEN_FAMILIES = ("nn_conv", "bilinear_conv")
_SKIMAGE_COLOUR = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
_SKIMAGE_GRAY = ("camera", "grass", "gravel", "brick")


def real_photographs() -> list[np.ndarray]:
    """The photographs shipped inside scikit-image and scikit-learn, as ``uint8 (H, W, 3)`` arrays."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = [np.asarray(getattr(skimage.data, name)(), dtype=np.uint8) for name in _SKIMAGE_COLOUR]
    photos += [np.repeat(np.asarray(getattr(skimage.data, n)(), dtype=np.uint8)[..., None], 3, axis=2) for n in _SKIMAGE_GRAY]
    photos += [np.asarray(img, dtype=np.uint8) for img in load_sample_images().images]
    return photos


def _family_kernels(family: str, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Fixed random decoder weights of one family: a smoothing or identity base plus noise."""
    blur = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
    ident = torch.zeros(3, 3)
    ident[1, 1] = 1.0

    def noisy(base, scale):
        k = base + torch.from_numpy(rng.normal(0, scale, (3, 3, 3))).float()  # one kernel per channel
        return k / k.sum(dim=(1, 2), keepdim=True)

    if family in ("nn_conv", "bilinear_conv"):
        return {"conv": noisy(blur, 0.03).unsqueeze(1)}  # (3, 1, 3, 3)
    if family == "tconv":
        tent = torch.tensor([0.5, 1.0, 0.5])
        k = torch.outer(tent, tent) + torch.from_numpy(rng.normal(0, 0.05, (3, 3, 3))).float()
        return {"tconv": k.unsqueeze(1)}  # (3, 1, 3, 3); sums ~4 = stride^2 keeps brightness
    if family == "pixel_shuffle":
        phases = [noisy(ident * 0.7 + blur * 0.3, 0.04) for _ in range(4)]
        return {"shuffle": torch.stack(phases, dim=1).reshape(12, 1, 3, 3)}  # channel c*4 + phase
    return {}


def upsample(low: torch.Tensor, family: str, kernels: dict[str, torch.Tensor]) -> torch.Tensor:
    """Decode a ``(3, h, w)`` image in [0, 1] to ``(3, 2h, 2w)`` with the family's upsampler."""
    x = low.unsqueeze(0)
    if family == "nn_conv":
        x = F.conv2d(F.pad(F.interpolate(x, scale_factor=2, mode="nearest"), (1, 1, 1, 1), mode="replicate"), kernels["conv"], groups=3)
    elif family == "bilinear_conv":
        up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.conv2d(F.pad(up, (1, 1, 1, 1), mode="replicate"), kernels["conv"], groups=3)
    elif family == "tconv":
        x = F.conv_transpose2d(x, kernels["tconv"], stride=2, padding=1, output_padding=1, groups=3)
    elif family == "pixel_shuffle":
        x = F.pixel_shuffle(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernels["shuffle"], groups=3), 2)
    elif family == "bicubic":
        x = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    else:
        raise ValueError(f"unknown family {family!r}; choose from {FAMILIES}")
    return x.squeeze(0).clamp(0, 1)


class _CropSampler:
    def __init__(self, photos: list[np.ndarray], size: int, rng: np.random.Generator):
        self.photos = [p for p in photos if min(p.shape[:2]) >= size]
        self.size, self.rng = size, rng

    def __call__(self) -> np.ndarray:
        photo = self.photos[self.rng.integers(len(self.photos))]
        h, w = photo.shape[:2]
        top, left = self.rng.integers(0, h - self.size + 1), self.rng.integers(0, w - self.size + 1)
        crop = photo[top : top + self.size, left : left + self.size]
        return crop[:, ::-1] if self.rng.random() < 0.5 else crop


def _fake_from(crop: np.ndarray, family: str, kernels) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float() / 255
    low = F.avg_pool2d(x.unsqueeze(0), 2).squeeze(0)
    out = upsample(low, family, kernels)
    return (out.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)


def _write_split(root: Path, family: str, n_per_class: int, sampler: _CropSampler, kernels, counter: list[int]) -> None:
    for label, folder in ((0, "0_real"), (1, "1_fake")):
        out = root / family / folder
        out.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            crop = sampler()
            pixels = crop if label == 0 else _fake_from(crop, family, kernels)
            Image.fromarray(np.ascontiguousarray(pixels)).save(out / f"{family}_{folder}_{i:05d}.png")
            counter[0] += 1


def build_proxy_benchmark(
    root: str | Path,
    seed: int = 0,
    size: int = 72,
    train_per_class: int = 160,
    val_per_class: int = 32,
    test_per_class: int = 64,
    seen: Sequence[str] = SEEN_FAMILIES,
    families: Sequence[str] = FAMILIES,
) -> dict:
    """Write ``root/{train,val}/<seen family>/{0_real,1_fake}`` and ``root/test/<family>/...``.

    Deterministic from ``seed``; returns (and writes as ``manifest.json``) the settings, counts and a
    digest of every file.
    """
    unknown = [f for f in list(families) + list(seen) if f not in FAMILIES]
    if unknown:
        raise ValueError(f"families: unknown {unknown}; choose from {FAMILIES}")
    if size % 2:
        raise ValueError(f"size must be even (fakes are upsampled x2), got {size}")
    root = Path(root)
    photos = real_photographs()
    rng = np.random.default_rng(seed)
    kernels = {family: _family_kernels(family, np.random.default_rng([seed, i])) for i, family in enumerate(FAMILIES)}
    sampler = _CropSampler(photos, size, rng)
    counter = [0]
    for split, fams, n in (("train", seen, train_per_class), ("val", seen, val_per_class), ("test", families, test_per_class)):
        for family in fams:
            _write_split(root / split, family, n, sampler, kernels[family], counter)
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.png")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    manifest = {
        "seed": seed, "size": size, "seen": list(seen), "families": list(families),
        "per_class": {"train": train_per_class, "val": val_per_class, "test": test_per_class},
        "files": counter[0], "sha256": digest.hexdigest(),
        "train": str(root / "train"), "val": str(root / "val"), "test": str(root / "test"),
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
