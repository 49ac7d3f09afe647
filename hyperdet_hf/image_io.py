"""Robust image decoding: every odd file becomes either a correct RGB image or an `ImageError` with a reason.

A detector reads pixel-level traces, so conversions keep pixel values as they are wherever possible:
alpha is dropped (not composited), palette and grayscale are expanded, CMYK goes through PIL's
conversion, 16-bit and 32-bit integer images are scaled to 8 bits, animated files give their first
frame. Oversize images are refused from the header, before any pixel is decoded.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 64_000_000  # about 8000 x 8000; a decompression bomb is refused from its header
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".jfif"})

Source = Union[str, os.PathLike, bytes, Image.Image]


class ImageError(ValueError):
    """An image that cannot be used; ``reason`` is a short machine-friendly tag, the message says why."""

    def __init__(self, source, reason: str, detail: str = ""):
        self.source = str(source) if not isinstance(source, (bytes, Image.Image)) else "<in-memory image>"
        self.reason = reason
        super().__init__(f"{self.source}: {reason}" + (f" ({detail})" if detail else ""))


def is_image_file(path: Union[str, os.PathLike]) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        if arr.max(initial=0) > 255:  # 16-bit (or wider) samples: scale to 8 bits
            arr = arr / 257.0 if arr.max() <= 65535 else arr / arr.max() * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr = arr * 255.0 if arr.max(initial=0) <= 1.0 else arr
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L").convert("RGB")
    if mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        # Drop alpha without compositing: keep the stored colour values, which carry the traces.
        return img.convert("RGBA" if mode.startswith("P") else mode).convert("RGB")
    return img.convert("RGB")  # P, L, 1, CMYK, YCbCr, LAB, HSV


def load_rgb(source: Source, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``source`` (path, bytes or PIL image) into a fully loaded 8-bit RGB ``PIL.Image``.

    Raises ``ImageError`` (a ``ValueError``) with ``reason`` in: ``missing``, ``empty``, ``not-an-image``,
    ``too-large``, ``corrupt``.
    """
    if isinstance(source, Image.Image):
        img = source
    else:
        if isinstance(source, bytes):
            data = source
        else:
            path = Path(source)
            if not path.is_file():
                raise ImageError(source, "missing", "no such file")
            data = path.read_bytes()
        if not data:
            raise ImageError(source, "empty", "zero-byte file")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise ImageError(source, "too-large", str(exc)) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ImageError(source, "not-an-image", type(exc).__name__) from None
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageError(source, "corrupt", f"size {width}x{height}")
    if width * height > max_pixels:
        raise ImageError(source, "too-large", f"{width}x{height} exceeds the limit of {max_pixels} pixels")
    try:
        if getattr(img, "is_animated", False):
            img.seek(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
            rgb = _to_rgb(img)
            rgb.load()
    except Image.DecompressionBombError as exc:
        raise ImageError(source, "too-large", str(exc)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(source, "corrupt", f"{type(exc).__name__}: {exc}") from None
    return rgb
