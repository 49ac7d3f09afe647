"""SRM high-pass filters, the paper's five filter groups (Sec. 3.1, App. A) and the view builder.

The 30 kernels are the "basic" SRM linear residual filters used by Ye-Net, built here from their
structure (a predictor of the centre pixel minus the centre), in Ye-Net order:

    0-7    1st order (8 directions)                divisor 1
    8-11   2nd order (4 axes)                      divisor 2
    12-19  3rd order (8 directions)                divisor 3
    20     SQUARE 3x3, 21-24 EDGE 3x3 (4 sides)    divisor 4
    25     SQUARE 5x5, 26-29 EDGE 5x5 (4 sides)    divisor 12

which makes the paper's groups 1-8, 9-12, 13-20, 21-25, 26-30. Every kernel sums to zero.

Choices the paper leaves open (train and test use the same code, so they stay identical):
- SRM acts on the CLIP-normalised tensor, per channel (depthwise), as AIDE does.
- Borders use reflect padding, so a constant image has zero residual everywhere, borders included.
- Because a convolution is linear, the mean over a group's kernels of the filtered image (Eq. 2-3)
  equals one convolution with the group's mean kernel: five depthwise convolutions, not thirty.
- Residuals are small next to CLIP-normalised pixels, so a view is ``hardtanh(scale * r, -clamp, clamp)``
  (DeepfakeBench clamps SRM output with hardtanh(-3, 3)); ``scale`` and ``clamp`` live in the config.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Row/column offsets of the 8 neighbours, clockwise from the top-left corner.
_CLOCKWISE = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))
# First-order neighbours in raster order (the order of Ye-Net's first class).
_RASTER = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
# Second-order axes: main diagonal, vertical, anti-diagonal, horizontal.
_AXES = ((-1, -1), (-1, 0), (-1, 1), (0, -1))

_SQUARE_3x3 = [[-1, 2, -1], [2, -4, 2], [-1, 2, -1]]
_SQUARE_5x5 = [
    [-1, 2, -2, 2, -1],
    [2, -6, 8, -6, 2],
    [-2, 8, -12, 8, -2],
    [2, -6, 8, -6, 2],
    [-1, 2, -2, 2, -1],
]


def _blank() -> torch.Tensor:
    return torch.zeros(5, 5, dtype=torch.float64)


def _put(kernel: torch.Tensor, offset: tuple[int, int], value: float) -> None:
    kernel[2 + offset[0], 2 + offset[1]] += value


def _first_order(d):
    k = _blank()
    _put(k, (0, 0), -1)
    _put(k, d, 1)
    return k


def _second_order(d):
    k = _blank()
    _put(k, (0, 0), -2)
    _put(k, d, 1)
    _put(k, (-d[0], -d[1]), 1)
    return k / 2


def _third_order(d):
    # Along direction d: -1 at 2d, +3 at d, -3 at the centre, +1 at -d.
    k = _blank()
    _put(k, (2 * d[0], 2 * d[1]), -1)
    _put(k, d, 3)
    _put(k, (0, 0), -3)
    _put(k, (-d[0], -d[1]), 1)
    return k / 3


def _square(values: list[list[int]], divisor: float) -> torch.Tensor:
    k = _blank()
    n = len(values)
    start = (5 - n) // 2
    k[start : start + n, start : start + n] = torch.tensor(values, dtype=torch.float64)
    return k / divisor


def _edges(square: torch.Tensor) -> list[torch.Tensor]:
    """The four half-kernels of a square kernel, in order up, right, down, left (centre line kept)."""
    up, right, down, left = (square.clone() for _ in range(4))
    up[3:, :] = 0
    right[:, :2] = 0
    down[:2, :] = 0
    left[:, 3:] = 0
    # The 3x3 square lives in the inner 3x3 window; its halves keep the centre row/column.
    return [up, right, down, left]


def _build_kernels() -> torch.Tensor:
    square3 = _square(_SQUARE_3x3, 4)
    square5 = _square(_SQUARE_5x5, 12)
    kernels = (
        [_first_order(d) for d in _RASTER]
        + [_second_order(d) for d in _AXES]
        + [_third_order(d) for d in _CLOCKWISE]
        + [square3]
        + _edges(square3)
        + [square5]
        + _edges(square5)
    )
    return torch.stack(kernels).to(torch.float32)


SRM_KERNELS: torch.Tensor = _build_kernels()
"""float32 ``(30, 5, 5)``: the 30 normalised SRM kernels in Ye-Net order."""

SRM_GROUPS: tuple[tuple[int, ...], ...] = (
    tuple(range(0, 8)),
    tuple(range(8, 12)),
    tuple(range(12, 20)),
    tuple(range(20, 25)),
    tuple(range(25, 30)),
)
"""The paper's five groups (App. A) as 0-based kernel indices."""

NUM_GROUPS = len(SRM_GROUPS)


def group_kernels() -> torch.Tensor:
    """``(5, 5, 5)``: each group's mean kernel (Eq. 3 folded into one filter by linearity)."""
    return torch.stack([SRM_KERNELS[list(g)].double().mean(0) for g in SRM_GROUPS]).float()


_GROUP_KERNELS = group_kernels()


def _grouped_conv(images: torch.Tensor) -> torch.Tensor:
    """Depthwise group filtering in float32: ``(B, C, H, W)`` -> ``(B, C, 5, H, W)``."""
    b, c, h, w = images.shape
    x = images.float()
    weight = _GROUP_KERNELS.to(x.device).unsqueeze(1).repeat(c, 1, 1, 1)  # (C*5, 1, 5, 5)
    # channels-last makes oneDNN's grouped conv 2-3.5x faster here (measured at 64 and 224 pixels)
    x = F.pad(x, (2, 2, 2, 2), mode="reflect").contiguous(memory_format=torch.channels_last)
    out = F.conv2d(x, weight, groups=c)  # channel c*5 + g
    return out.unflatten(1, (c, NUM_GROUPS))


def group_residuals(images: torch.Tensor) -> torch.Tensor:
    """Eq. 2-3: per group, the mean of the per-channel filtered images. ``(B, C, H, W) -> (B, 5, C, H, W)``.

    Computed in float32 whatever the input dtype (residuals are differences of nearby values and lose
    too much in bf16). Padding is reflect; interior pixels are the exact valid convolution.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    return _grouped_conv(images).permute(0, 2, 1, 3, 4)


def srm_view_map(residuals: torch.Tensor, scale: float, clamp: float) -> torch.Tensor:
    """The documented monotone map from a residual to a view: ``hardtanh(scale * r, -clamp, clamp)``."""
    return F.hardtanh(residuals * scale, -clamp, clamp)


def make_views(
    pixel_values: torch.Tensor, scale: float, clamp: float, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """The six views of a batch, view-major: rows ``[v*B:(v+1)*B]`` are view ``v+1``.

    Views 1..5 are the mapped SRM group residuals, view 6 is ``pixel_values`` itself. One output
    allocation; the residuals are written straight into it in view-major order.
    """
    b, c, h, w = pixel_values.shape
    dtype = dtype or pixel_values.dtype
    out = torch.empty((NUM_GROUPS + 1) * b, c, h, w, dtype=dtype, device=pixel_values.device)
    residuals = _grouped_conv(pixel_values).mul_(scale)  # (B, C, 5, H, W), float32, fresh: scaled in place
    filtered = out[: NUM_GROUPS * b].view(NUM_GROUPS, b, c, h, w)
    # == srm_view_map(residuals, scale, clamp) cast to dtype. Rounding is monotone, so clamping after the
    # cast gives the same numbers; in a narrower dtype it is the cheaper order (measured 2x at 64 and 224 px).
    if out.element_size() < residuals.element_size():
        filtered.copy_(residuals.permute(2, 0, 1, 3, 4)).clamp_(-clamp, clamp)
    else:
        filtered.copy_(residuals.clamp_(-clamp, clamp).permute(2, 0, 1, 3, 4))
    out[NUM_GROUPS * b :].copy_(pixel_values)
    return out


def make_group_view(pixel_values: torch.Tensor, group: int, scale: float, clamp: float, dtype=None):
    """One filtered view (``group`` 0-based) for a batch; used by the cascade to build only what it needs."""
    b, c, h, w = pixel_values.shape
    weight = _GROUP_KERNELS[group].to(pixel_values.device).expand(c, 1, 5, 5)
    x = F.pad(pixel_values.float(), (2, 2, 2, 2), mode="reflect").contiguous(memory_format=torch.channels_last)
    r = F.conv2d(x, weight, groups=c).contiguous()
    return srm_view_map(r, scale, clamp).to(dtype or pixel_values.dtype)
