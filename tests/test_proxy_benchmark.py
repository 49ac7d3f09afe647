import json

import numpy as np
import pytest
from PIL import Image

from hyperdet_hf.layouts import scan_benchmark
from hyperdet_hf.proxy_benchmark import FAMILIES, build_proxy_benchmark, upsample, _family_kernels

import torch


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("proxy")
    manifest = build_proxy_benchmark(root, seed=3, size=32, train_per_class=4, val_per_class=2, test_per_class=3)
    return root, manifest


def test_layout_and_counts(bench):
    root, manifest = bench
    test = scan_benchmark(root / "test")
    assert sorted(test) == sorted(FAMILIES)
    for family, examples in test.items():
        assert sorted(e.label for e in examples) == [0, 0, 0, 1, 1, 1]
    train = scan_benchmark(root / "train")
    assert sorted(train) == ["bilinear_conv", "nn_conv"]
    assert manifest["files"] == 2 * 4 * 2 + 2 * 2 * 2 + 5 * 3 * 2
    assert json.loads((root / "manifest.json").read_text())["sha256"] == manifest["sha256"]


def test_no_format_or_size_shortcut(bench):
    root, _ = bench
    seen = set()
    for path in root.rglob("*.png"):
        with Image.open(path) as img:
            seen.add((path.parent.name, img.format, img.mode, img.size))
    assert {(fmt, mode, size) for _, fmt, mode, size in seen} == {("PNG", "RGB", (32, 32))}
    assert {label for label, *_ in seen} == {"0_real", "1_fake"}


def test_deterministic_from_seed(bench, tmp_path):
    root, manifest = bench
    again = build_proxy_benchmark(tmp_path / "a", seed=3, size=32, train_per_class=4, val_per_class=2, test_per_class=3)
    other = build_proxy_benchmark(tmp_path / "b", seed=4, size=32, train_per_class=4, val_per_class=2, test_per_class=3)
    assert again["sha256"] == manifest["sha256"]
    assert other["sha256"] != manifest["sha256"]


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_doubles_size_and_keeps_brightness(family):
    low = torch.rand(3, 16, 16) * 0.5 + 0.25
    out = upsample(low, family, _family_kernels(family, np.random.default_rng(0)))
    assert out.shape == (3, 32, 32)
    assert abs(float(out.mean()) - float(low.mean())) < 0.05


def test_bad_arguments():
    with pytest.raises(ValueError, match="families"):
        build_proxy_benchmark("/tmp/unused", families=["gan9000"])
    with pytest.raises(ValueError, match="even"):
        build_proxy_benchmark("/tmp/unused", size=33)
