"""Shared helpers for the benchmarks: model shapes, timing (interleaved repeats, median), matmul rate, FLOPs."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

from hyperdet_hf import HyperDetConfig, HyperDetForImageClassification
from hyperdet_hf.configuration_hyperdet import VIT_L14_VISION
from hyperdet_hf.runtime import keep_freed_memory

# As the CLI and training do (HYPERDET_KEEP_FREED_MEMORY=0 measures glibc's default behaviour).
KEEPS_FREED_MEMORY = keep_freed_memory()

TINY_VISION = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                   patch_size=8, image_size=64, projection_dim=32)
SIZES = {"vitl14": VIT_L14_VISION, "tiny": TINY_VISION}


def build(size: str, seed: int = 0, **overrides) -> HyperDetForImageClassification:
    """A random-weight detector of the given shape with non-zero adapters (as after training)."""
    torch.manual_seed(seed)
    vision = dict(SIZES[size])
    kwargs = {} if size == "vitl14" else {"tuned_layers": [2, 3], "lora_rank": 8}
    kwargs.update(overrides)
    model = HyperDetForImageClassification(HyperDetConfig(vision_config=vision, **kwargs)).eval()
    net = model.hyperdet.hyper_lora
    if net is not None and hasattr(net, "head_B"):
        with torch.no_grad():
            for p in net.head_B.parameters():
                torch.nn.init.normal_(p, std=0.01)
    return model


def timed_interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved (A, B, A, B, ...) so machine noise
    hits all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in samples.items()}


def matmul_tflops(dtype: torch.dtype, m: int = 1536, k: int = 1024, n: int = 4096, repeats: int = 5) -> float:
    """Measured dense matmul rate (TFLOP/s) at a ViT-L MLP-like shape."""
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    secs = timed_interleaved({"mm": lambda: torch.mm(a, b)}, repeats=repeats, warmup=2)["mm"]
    return 2 * m * k * n / secs / 1e12


def vit_flops(vision: dict) -> float:
    """Forward FLOPs of one image through the CLIP vision tower (matmuls and attention; ~2 per MAC)."""
    d, f, layers = vision["hidden_size"], vision["intermediate_size"], vision["num_hidden_layers"]
    p, s = vision["patch_size"], vision["image_size"]
    n = (s // p) ** 2 + 1
    per_layer = 2 * (4 * n * d * d + 2 * n * n * d + 2 * n * d * f)
    patch = 2 * (n - 1) * 3 * p * p * d
    return layers * per_layer + patch + 2 * d * vision["projection_dim"]


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])
