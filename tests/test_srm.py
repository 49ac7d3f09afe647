import pytest
import torch
import torch.nn.functional as F

from hyperdet_hf import srm

# Unnormalised integer forms and divisors of Ye-Net's classes, written out independently of srm.py.
FIRST = [[[1, 0, 0], [0, -1, 0], [0, 0, 0]], [[0, 1, 0], [0, -1, 0], [0, 0, 0]], [[0, 0, 1], [0, -1, 0], [0, 0, 0]],
         [[0, 0, 0], [1, -1, 0], [0, 0, 0]], [[0, 0, 0], [0, -1, 1], [0, 0, 0]], [[0, 0, 0], [0, -1, 0], [1, 0, 0]],
         [[0, 0, 0], [0, -1, 0], [0, 1, 0]], [[0, 0, 0], [0, -1, 0], [0, 0, 1]]]
SECOND = [[[1, 0, 0], [0, -2, 0], [0, 0, 1]], [[0, 1, 0], [0, -2, 0], [0, 1, 0]],
          [[0, 0, 1], [0, -2, 0], [1, 0, 0]], [[0, 0, 0], [1, -2, 1], [0, 0, 0]]]
THIRD_FIRST = [[-1, 0, 0, 0, 0], [0, 3, 0, 0, 0], [0, 0, -3, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 0]]
THIRD_LAST = [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [-1, 3, -3, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
SQUARE3 = [[-1, 2, -1], [2, -4, 2], [-1, 2, -1]]
EDGE3_RIGHT = [[0, 2, -1], [0, -4, 2], [0, 2, -1]]
SQUARE5 = [[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]]
EDGE5_LEFT = [[-1, 2, -2, 0, 0], [2, -6, 8, 0, 0], [-2, 8, -12, 0, 0], [2, -6, 8, 0, 0], [-1, 2, -2, 0, 0]]


def pad5(k):
    k = torch.tensor(k, dtype=torch.float32)
    p = (5 - k.shape[0]) // 2
    return F.pad(k, (p, p, p, p))


def test_kernel_tensor_shape_and_dtype():
    assert srm.SRM_KERNELS.shape == (30, 5, 5)
    assert srm.SRM_KERNELS.dtype == torch.float32


def test_kernel_values_in_ye_net_order():
    k = srm.SRM_KERNELS
    for i, ref in enumerate(FIRST):
        torch.testing.assert_close(k[i], pad5(ref))
    for i, ref in enumerate(SECOND):
        torch.testing.assert_close(k[8 + i], pad5(ref) / 2)
    torch.testing.assert_close(k[12], pad5(THIRD_FIRST) / 3)
    torch.testing.assert_close(k[19], pad5(THIRD_LAST) / 3)
    torch.testing.assert_close(k[20], pad5(SQUARE3) / 4)
    torch.testing.assert_close(k[22], pad5(EDGE3_RIGHT) / 4)
    torch.testing.assert_close(k[25], pad5(SQUARE5) / 12)
    torch.testing.assert_close(k[29], pad5(EDGE5_LEFT) / 12)


def test_all_kernels_distinct_and_zero_sum():
    flat = srm.SRM_KERNELS.view(30, -1)
    assert torch.all(flat.sum(1).abs() < 1e-6)
    assert len({tuple(r.tolist()) for r in flat}) == 30


def test_groups():
    assert srm.SRM_GROUPS == (tuple(range(8)), tuple(range(8, 12)), tuple(range(12, 20)),
                              tuple(range(20, 25)), tuple(range(25, 30)))
    assert [len(g) for g in srm.SRM_GROUPS] == [8, 4, 8, 5, 5]


def test_constant_image_has_zero_residual():
    x = torch.full((2, 3, 20, 24), 0.7)
    r = srm.group_residuals(x)
    assert r.shape == (2, 5, 3, 20, 24)
    assert r.abs().max() < 1e-5  # reflect padding: zero at the borders too


def test_residuals_equal_mean_of_filtered_images_in_interior():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 16, 18, generator=g)
    r = srm.group_residuals(x)
    for gi, group in enumerate(srm.SRM_GROUPS):
        filtered = []
        for kidx in group:
            w = srm.SRM_KERNELS[kidx].view(1, 1, 5, 5).repeat(3, 1, 1, 1)
            filtered.append(F.conv2d(x, w, groups=3))  # valid convolution: interior only
        ref = torch.stack(filtered).mean(0)
        torch.testing.assert_close(r[:, gi, :, 2:-2, 2:-2], ref, atol=1e-5, rtol=1e-5)


def test_residuals_are_per_channel():
    x = torch.zeros(1, 3, 12, 12)
    x[0, 1, 6, 6] = 1.0  # an impulse in channel 1 only
    r = srm.group_residuals(x)
    assert r[0, :, 0].abs().max() == 0 and r[0, :, 2].abs().max() == 0
    assert r[0, :, 1].abs().max() > 0


def test_make_views_order_and_map():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 16, 16, generator=g) * 0.3
    views = srm.make_views(x, scale=8.0, clamp=3.0)
    assert views.shape == (24, 3, 16, 16)
    assert torch.equal(views[20:], x)
    r = srm.group_residuals(x)
    for v in range(5):
        expected = torch.clamp(8.0 * r[:, v], -3.0, 3.0)
        torch.testing.assert_close(views[v * 4 : (v + 1) * 4], expected)
        torch.testing.assert_close(srm.make_group_view(x, v, 8.0, 3.0), expected)


@pytest.mark.parametrize("scale,clamp", [(8.0, 3.0), (5.0, 2.7)])  # 2.7 is not a bf16 number
def test_make_views_bf16_is_the_float32_view_rounded(scale, clamp):
    """bf16 views are computed from float32 residuals and clamped after the cast: exactly the float32 views
    rounded to bf16, values beyond the clamp included."""
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    views = srm.make_views(x, scale, clamp, dtype=torch.bfloat16)
    assert views.dtype == torch.bfloat16
    ref = srm.make_views(x, scale, clamp)
    assert (ref[:10].abs() == clamp).float().mean() > 0.05  # the clamp is exercised
    assert torch.equal(views, ref.to(torch.bfloat16))


def test_group_residuals_rejects_wrong_rank():
    with pytest.raises(ValueError, match="B, C, H, W"):
        srm.group_residuals(torch.zeros(3, 8, 8))
