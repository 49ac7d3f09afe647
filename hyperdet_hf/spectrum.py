"""Mean Fourier spectra of images and of their SRM group residuals (the paper's Figures 3 and 9).

Each image is decoded to RGB, center cropped to ``size`` (never resized: images smaller than ``size`` are skipped
and reported) and scaled to [0, 1]. For the original and for each of the five SRM group residuals
(``hyperdet_hf.srm.group_residuals``, Eq. 2-3), the per-image mean is removed, a 2-D Hann window is applied
(``window=False`` to skip it; without it the crop's borders draw a bright cross), the 2-D FFT's power is averaged
over channels and images, shifted so that low frequencies sit in the centre, and shown as ``log10(power)``.
Upsampling and other generator artifacts show up as peaks and grids away from the centre; the SRM residuals
suppress the low-frequency (semantic) energy in the centre.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import torch

from .image_io import ImageError, is_image_file, load_rgb
from .srm import NUM_GROUPS, group_residuals

PANELS = ("original",) + tuple(f"srm_group_{g}" for g in range(1, NUM_GROUPS + 1))


def expand_inputs(items: Iterable[str], all_files: bool = False) -> tuple[list[str], list[str]]:
    """Files, folders (recursive; image extensions unless ``all_files``) and globs, in order, without duplicates.

    Returns ``(paths, unmatched)``: ``unmatched`` are arguments that are neither a file, a folder, nor a glob that
    matches something (reported as missing by the callers)."""
    import glob

    paths, unmatched, seen = [], [], set()

    def add(p):
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            paths.append(p)

    for item in items:
        if os.path.isdir(item):
            for dirpath, dirnames, filenames in os.walk(item, followlinks=True):
                dirnames.sort()
                for name in sorted(filenames):
                    if all_files or is_image_file(name):
                        add(os.path.join(dirpath, name))
        elif os.path.exists(item):
            add(item)
        elif any(ch in item for ch in "*?["):
            matches = sorted(glob.glob(item, recursive=True))
            files = [m for m in matches if os.path.isfile(m)]
            if not files:
                unmatched.append(item)
            for m in files:
                add(m)
        else:
            unmatched.append(item)
    return paths, unmatched


def center_crop_array(img, size: int) -> Optional[np.ndarray]:
    """``(size, size, 3)`` float32 in [0, 1] from the centre of a PIL RGB image, or None when it is smaller."""
    w, h = img.size
    if w < size or h < size:
        return None
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0


def _power(x: torch.Tensor, window: bool = True) -> torch.Tensor:
    """Sum over the leading dims of the FFT power of ``(..., H, W)`` maps after removing each map's mean
    (and multiplying by a 2-D Hann window, so the crop's borders do not draw a bright cross)."""
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    if window:
        h, w = x.shape[-2:]
        x = x * (torch.hann_window(h, periodic=False, dtype=x.dtype)[:, None] * torch.hann_window(w, periodic=False, dtype=x.dtype))
    power = torch.fft.fft2(x).abs().square()
    return power.reshape(-1, *x.shape[-2:]).sum(0)


def mean_spectra(paths: Sequence[str], size: int = 224, batch_size: int = 16, window: bool = True) -> tuple[dict[str, np.ndarray], int, list[tuple[str, str]]]:
    """``({panel: log10 mean power (size, size)}, n_images_used, [(path, reason), ...])`` for the images at ``paths``."""
    sums = {name: torch.zeros(size, size, dtype=torch.float64) for name in PANELS}
    used, skipped, batch = 0, [], []

    def flush():
        nonlocal used
        if not batch:
            return
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).contiguous()  # (B, 3, H, W)
        with torch.no_grad():
            res = group_residuals(x)  # (B, 5, 3, H, W)
        channels = x.shape[1]
        sums["original"] += _power(x.double(), window) / channels
        for g in range(NUM_GROUPS):
            sums[PANELS[g + 1]] += _power(res[:, g].double(), window) / channels
        used += x.shape[0]
        batch.clear()

    for path in paths:
        try:
            arr = center_crop_array(load_rgb(path), size)
        except ImageError as exc:
            skipped.append((str(path), exc.reason))
            continue
        if arr is None:
            skipped.append((str(path), f"smaller-than-{size}"))
            continue
        batch.append(arr)
        if len(batch) >= batch_size:
            flush()
    flush()
    if used == 0:
        return {}, 0, skipped
    out = {}
    for name, total in sums.items():
        mean = torch.fft.fftshift(total / used)
        out[name] = torch.log10(mean + 1e-12).float().numpy()
    return out, used, skipped


def default_labels(inputs: Sequence[Sequence[str]]) -> list[str]:
    """Each row's label: the last path component of its first input, extended with parent folders while
    two rows would share it (``tconv/1_fake`` and ``pixel_shuffle/1_fake``, not ``1_fake`` twice)."""
    parts = [Path(str(items[0]).rstrip("/")).parts or ("",) for items in inputs]
    depth = [1] * len(parts)
    for _ in range(max((len(p) for p in parts), default=1)):
        labels = ["/".join(p[-d:]) for p, d in zip(parts, depth)]
        clashes = {lab for lab in labels if labels.count(lab) > 1}
        if not clashes:
            return labels
        depth = [d + 1 if lab in clashes and d < len(p) else d for p, d, lab in zip(parts, depth, labels)]
    return [f"{lab} ({i + 1})" for i, lab in enumerate(labels)]


def spectrum_figure(
    inputs: Sequence[Sequence[str]],
    output: str | os.PathLike,
    *,
    labels: Optional[Sequence[str]] = None,
    size: int = 224,
    npz: Optional[str | os.PathLike] = None,
) -> dict:
    """One row per input set (each a list of files/folders/globs). Writes the PNG (and the arrays to ``npz``).

    Returns ``{"rows": [(label, n_used)], "skipped": [(path, reason)], "unmatched": [...], "output": Path}``.
    """
    from .plots import plot_spectra

    rows, skipped, unmatched, arrays = [], [], [], {}
    for k, items in enumerate(inputs):
        paths, missing = expand_inputs(items)
        unmatched += missing
        spectra, used, bad = mean_spectra(paths, size=size)
        skipped += bad
        label = labels[k] if labels and k < len(labels) else default_labels(inputs)[k]
        if used:
            rows.append((label, spectra, used))
            arrays.update({f"{label}/{name}": arr for name, arr in spectra.items()})
    if not rows:
        raise ValueError(f"no usable image (each needs at least {size}x{size} pixels)")
    path = plot_spectra(rows, output)
    if npz:
        np.savez_compressed(npz, **arrays)
    return {"rows": [(label, n) for label, _, n in rows], "skipped": skipped, "unmatched": unmatched, "output": path}
