"""Shared builders for the evaluation / CLI / card tests: a tiny saved model and generated benchmark folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hyperdet_hf import HyperDetForImageClassification, default_image_processor

from .conftest import randomize_adapters, tiny_config

REPO = Path(__file__).resolve().parents[1]
HYPERDET = [sys.executable, "-m", "hyperdet_hf.cli"]


def save_tiny_model(folder: Path, seed: int = 0) -> Path:
    """A tiny random-weight detector (non-zero adapters) with a 32-pixel forensic processor, saved to ``folder``."""
    torch.manual_seed(seed)
    model = HyperDetForImageClassification(tiny_config()).eval()
    randomize_adapters(model, seed=seed)
    with torch.no_grad():  # a head with some weight, so scores spread away from 0.5
        model.hyperdet.classifier.weight.mul_(20.0)
    model.save_pretrained(folder)
    default_image_processor(crop_size=32).save_pretrained(folder)
    return folder


def image_array(rng: np.random.Generator, fake: bool, size=(40, 48)) -> np.ndarray:
    """Reals: smooth (2x nearest-upsampled noise); fakes: white noise. Different enough to move the scores."""
    h, w = size
    if fake:
        return rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    small = rng.integers(0, 256, ((h + 1) // 2, (w + 1) // 2, 3))
    return np.repeat(np.repeat(small, 2, 0), 2, 1)[:h, :w].astype(np.uint8)


def write_images(folder: Path, n: int, fake: bool, rng: np.random.Generator, prefix: str = "img", size=(40, 48)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"{prefix}{i:03d}.png"
        Image.fromarray(image_array(rng, fake, size)).save(p)
        paths.append(p)
    return paths


def make_benchmark(root: Path, seed: int = 0) -> Path:
    """Every folder layout the evaluator maps:

    - ``progan/{cat,dog}/{0_real,1_fake}`` (class folders) with one corrupt file in ``progan/cat/1_fake``;
    - ``stylegan/{0_real,1_fake}``;
    - UnivFD diffusion sets: ``ldm_200/1_fake`` and ``glide_100_27/1_fake`` with reals in ``laion/0_real``,
      ``guided/1_fake`` with reals in ``imagenet/0_real``;
    - GenImage ``midjourney/imagenet_midjourney/{train,val}/{nature,ai}`` (only ``val`` counts).
    """
    rng = np.random.default_rng(seed)
    for cls in ("cat", "dog"):
        write_images(root / "progan" / cls / "0_real", 4, False, rng, prefix=f"{cls}_")
        write_images(root / "progan" / cls / "1_fake", 4, True, rng, prefix=f"{cls}_")
    (root / "progan" / "cat" / "1_fake" / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    write_images(root / "stylegan" / "0_real", 6, False, rng)
    write_images(root / "stylegan" / "1_fake", 6, True, rng)
    write_images(root / "laion" / "0_real", 5, False, rng)
    write_images(root / "imagenet" / "0_real", 4, False, rng)
    write_images(root / "ldm_200" / "1_fake", 5, True, rng)
    write_images(root / "glide_100_27" / "1_fake", 3, True, rng)
    write_images(root / "guided" / "1_fake", 4, True, rng)
    for split, n in (("train", 3), ("val", 4)):
        write_images(root / "midjourney" / "imagenet_midjourney" / split / "nature", n, False, rng, prefix=split)
        write_images(root / "midjourney" / "imagenet_midjourney" / split / "ai", n, True, rng, prefix=split)
    return root


def run_cli(args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    """``hyperdet ARGS`` in a real subprocess (offline)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run([*HYPERDET, *map(str, args)], capture_output=True, text=True, cwd=cwd or REPO, env=env,
                          timeout=timeout)


def direct_p_fake(model_dir: Path, paths, dtype=torch.float32) -> np.ndarray:
    """P(fake) computed by hand: PIL decode -> the saved processor (center crop, no resize) -> model -> softmax."""
    from transformers import AutoImageProcessor

    model = HyperDetForImageClassification.from_pretrained(model_dir).to(dtype).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir)
    images = [Image.open(p).convert("RGB") for p in paths]
    with torch.inference_mode():
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        return model(pixel_values=pixels).logits.float().softmax(-1)[:, 1].numpy().astype(np.float64)
