"""Train- and test-time image transforms of the field (CNNSpot, UnivFD), with every random choice seeded.

Train (CNNSpot order): Gaussian blur (probability ``blur_prob``, sigma ~ U(blur_sigma)) and JPEG
re-encoding (probability ``jpeg_prob``, quality ~ U{jpeg_quality}, integers, bounds included) on the
whole image, then a random crop of the backbone's input size, a horizontal flip, CLIP normalisation.
No resize anywhere: resizing destroys the upsampling traces a detector reads. An image smaller than the
crop is zero-padded, centred, exactly as the test-time processor pads it.

Test: the forensic processor of ``processing.py`` (center crop, no resize), so validation numbers are
the numbers ``pipeline`` gives.

Why seeded per example: the random draws of an example come from a generator seeded by
``(seed, epoch, example key)``. The same image gets the same augmentation in a given epoch whatever the
number of processes or DataLoader workers and after a resume, which makes resumed runs bit-identical.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, dataclass, fields
from typing import Optional

import numpy as np
from PIL import Image

from .processing import CLIP_MEAN, CLIP_STD, default_image_processor

_MEAN = np.asarray(CLIP_MEAN, dtype=np.float32)
_STD = np.asarray(CLIP_STD, dtype=np.float32)


@dataclass
class AugmentConfig:
    """Training augmentation; the defaults are the paper's (blur and JPEG with p = 0.1, CNNSpot ranges)."""

    flip_prob: float = 0.5
    blur_prob: float = 0.1
    blur_sigma: tuple = (0.0, 3.0)
    jpeg_prob: float = 0.1
    jpeg_quality: tuple = (30, 100)

    def __post_init__(self):
        def fail(name, why):
            raise ValueError(f"augment.{name}: {why}")

        for name in ("flip_prob", "blur_prob", "jpeg_prob"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                fail(name, f"must be a probability in [0, 1], got {value!r}")
            setattr(self, name, float(value))
        for name, kind in (("blur_sigma", float), ("jpeg_quality", int)):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
                fail(name, f"must be a pair [low, high], got {value!r}")
            low, high = value
            if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in (low, high)):
                fail(name, f"must hold numbers, got {value!r}")
            if kind is int and any(float(v) != int(v) for v in (low, high)):
                fail(name, f"must hold integers, got {value!r}")
            if low > high:
                fail(name, f"low > high in {value!r}")
            setattr(self, name, (kind(low), kind(high)))
        if self.blur_sigma[0] < 0:
            fail("blur_sigma", f"must be >= 0, got {self.blur_sigma!r}")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            fail("jpeg_quality", f"must lie in 1..100, got {self.jpeg_quality!r}")

    @classmethod
    def from_dict(cls, values: Optional[dict]) -> "AugmentConfig":
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"augment: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class AugmentParams:
    """The random choices for one example (None: that augmentation is off for it)."""

    blur_sigma: Optional[float]
    jpeg_quality: Optional[int]
    flip: bool
    crop_u: float  # crop offset as a fraction of the free room, in [0, 1)
    crop_v: float


def example_rng(seed: int, epoch: int, key: str) -> np.random.Generator:
    """A generator that depends only on ``(seed, epoch, key)``: no global state, no process or worker id."""
    digest = int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")
    return np.random.default_rng(np.random.SeedSequence([int(seed) & (2**63 - 1), int(epoch), digest]))


def sample_params(config: AugmentConfig, rng: np.random.Generator) -> AugmentParams:
    """Draw one example's augmentation. A fixed number of draws per call, whatever is switched on."""
    u_blur, u_jpeg, u_flip, crop_u, crop_v, sigma_u = rng.random(6)
    quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1], endpoint=True))
    low, high = config.blur_sigma
    return AugmentParams(
        blur_sigma=float(low + (high - low) * sigma_u) if u_blur < config.blur_prob else None,
        jpeg_quality=quality if u_jpeg < config.jpeg_prob else None,
        flip=bool(u_flip < config.flip_prob),
        crop_u=float(crop_u),
        crop_v=float(crop_v),
    )


def gaussian_blur(image: Image.Image, sigma: float) -> Image.Image:
    """Per-channel Gaussian filter (scipy.ndimage, as CNNSpot), rounded back to 8 bits."""
    if sigma <= 0:
        return image
    from scipy.ndimage import gaussian_filter

    arr = np.asarray(image, dtype=np.float32)
    out = gaussian_filter(arr, sigma=(sigma, sigma, 0), mode="reflect")
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), mode="RGB")


def jpeg_compress(image: Image.Image, quality: int) -> Image.Image:
    """Re-encode as JPEG at ``quality`` with PIL (default 4:2:0 subsampling) and decode again."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def crop_or_pad(arr: np.ndarray, size: int, u: float, v: float) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(size, size, 3)``: a crop at fractions ``(v, u)`` of the free room where the
    image is larger, zero padding centred (top/left get the larger half, as the test processor) where smaller."""
    out = np.zeros((size, size, arr.shape[2]), dtype=arr.dtype)
    spans = []
    for dim, frac in ((arr.shape[0], v), (arr.shape[1], u)):
        if dim >= size:
            start = min(int(frac * (dim - size + 1)), dim - size)
            spans.append((slice(start, start + size), slice(0, size)))
        else:
            pad = (size - dim + 1) // 2
            spans.append((slice(0, dim), slice(pad, pad + dim)))
    (src_y, dst_y), (src_x, dst_x) = spans
    out[dst_y, dst_x] = arr[src_y, src_x]
    return out


def normalize(arr: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(3, H, W)`` float32 with CLIP mean/std."""
    x = arr.astype(np.float32) * np.float32(1.0 / 255.0)
    return np.ascontiguousarray(((x - _MEAN) / _STD).transpose(2, 0, 1))


class TrainTransform:
    """Blur -> JPEG -> random crop (pad small) -> flip -> normalise; ``(image, rng) -> (3, S, S)`` float32."""

    def __init__(self, crop_size: int, config: Optional[AugmentConfig] = None):
        self.crop_size = int(crop_size)
        self.config = config or AugmentConfig()

    def apply(self, image: Image.Image, params: AugmentParams) -> np.ndarray:
        if params.blur_sigma is not None:
            image = gaussian_blur(image, params.blur_sigma)
        if params.jpeg_quality is not None:
            image = jpeg_compress(image, params.jpeg_quality)
        arr = crop_or_pad(np.asarray(image.convert("RGB")), self.crop_size, params.crop_u, params.crop_v)
        if params.flip:
            arr = arr[:, ::-1]
        return normalize(arr)

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> np.ndarray:
        return self.apply(image, sample_params(self.config, rng))


class EvalTransform:
    """The forensic test-time processor (center crop, no resize, zero padding); ``image -> (3, S, S)``."""

    def __init__(self, crop_size: int):
        self.crop_size = int(crop_size)
        self.processor = default_image_processor(crop_size=self.crop_size)

    def __call__(self, image: Image.Image, rng=None) -> np.ndarray:
        out = self.processor(image, return_tensors="np")["pixel_values"][0]
        return np.ascontiguousarray(out, dtype=np.float32)


__all__ = [
    "AugmentConfig",
    "AugmentParams",
    "EvalTransform",
    "TrainTransform",
    "crop_or_pad",
    "example_rng",
    "gaussian_blur",
    "jpeg_compress",
    "normalize",
    "sample_params",
]
