"""Loading a detector for inference: the fast path by default (bf16 weights where the CPU has bf16 units)."""

from __future__ import annotations

import functools
import os
from typing import Optional

import torch

from .modeling_hyperdet import HyperDetForImageClassification
from .processing import default_image_processor

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


@functools.lru_cache(maxsize=None)
def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 matmul units (AMX or AVX512-BF16)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("amx_bf16", "avx512_bf16"))


def resolve_dtype(dtype: str | torch.dtype = "auto", device: str | torch.device = "cpu") -> torch.dtype:
    """``"auto"``: bf16 on a CUDA device with bf16 or a CPU with bf16 units, else float32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        device = torch.device(device)
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.bfloat16 if cpu_has_bf16() else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype: unknown {dtype!r}; choose from auto, float32, bfloat16")
    return DTYPES[dtype]


def load_detector(
    name_or_path: str | os.PathLike,
    dtype: str | torch.dtype = "auto",
    device: Optional[str | torch.device] = None,
):
    """``(model, image_processor)`` for a saved detector (local folder or Hub id), in eval mode.

    The weights are cast to ``dtype`` (bf16 weights, not autocast: no per-call re-casting). The
    processor is the folder's own if it has one, else the forensic default at the model's image size.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch_dtype = resolve_dtype(dtype, device)
    model = HyperDetForImageClassification.from_pretrained(name_or_path)
    model = model.to(device=device, dtype=torch_dtype).eval()
    try:
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(name_or_path)
    except (OSError, ValueError):
        processor = default_image_processor(crop_size=model.config.vision_config.image_size)
    return model, processor
