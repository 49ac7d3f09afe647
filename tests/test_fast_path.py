"""The fast inference path (``hyperdet detect``: batched six-view pass, cached adapters, bf16 weights,
inference mode) against a slow reference written independently of it: for each image and each view, a plain
``CLIPVisionModelWithProjection`` whose fc1/fc2 weights have that view's adapter merged in, float32, one
image at a time. Compared on the six view logits (P(fake) saturates on a random head): float32 agrees to
rounding, bf16 within its tolerance (measured 1.4% of the largest logit; 3% allowed)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor

from hyperdet_hf import HyperDetForImageClassification, srm

from .conftest import plain_backbone
from .eval_helpers import run_cli, save_tiny_model, write_images


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("fast")
    model_dir = save_tiny_model(base / "model", seed=3)
    rng = np.random.default_rng(0)
    paths = write_images(base / "images", 5, False, rng, prefix="real") + write_images(base / "images", 5, True, rng, prefix="fake")
    return model_dir, paths


def reference_view_logits(model_dir, paths) -> dict:
    model = HyperDetForImageClassification.from_pretrained(model_dir).eval()
    body = model.hyperdet
    cfg = body.config
    processor = AutoImageProcessor.from_pretrained(model_dir)
    merged = [plain_backbone(model, task=v) for v in range(6)]  # view v -> CLIP with adapter v merged
    out = {}
    with torch.no_grad():
        for p in paths:
            x = processor(images=[Image.open(p).convert("RGB")], return_tensors="pt")["pixel_values"]
            residuals = srm.group_residuals(x)[0]  # (5, C, H, W)
            views = [torch.clamp(cfg.srm_scale * residuals[g], -cfg.srm_clamp, cfg.srm_clamp) for g in range(5)] + [x[0]]
            z = [body.classifier(merged[v](pixel_values=views[v][None]).image_embeds).item() for v in range(6)]
            out[os.path.basename(p)] = np.array(z)
    return out


def detect(model_dir, paths, dtype) -> dict:
    proc = run_cli(["detect", *paths, "--model", model_dir, "--dtype", dtype, "--batch_size", "4"])
    assert proc.returncode == 0, proc.stderr
    out = {}
    for r in map(json.loads, proc.stdout.splitlines()):
        z = np.array(list(r["view_logits"].values()))
        assert r["fused_logit"] == pytest.approx(z.mean(), abs=1e-5)
        out[os.path.basename(r["path"])] = z
    return out


def test_detect_fast_path_matches_the_per_view_reference(setup):
    model_dir, paths = setup
    ref = reference_view_logits(model_dir, paths)
    z = np.stack(list(ref.values()))  # (images, 6)
    scale = np.abs(z).max()
    assert z.std(0).min() > 0.05 * scale and z.std(1).min() > 0.01 * scale  # logits differ by image and by view
    fp32, bf16 = detect(model_dir, paths, "float32"), detect(model_dir, paths, "bfloat16")
    assert fp32.keys() == bf16.keys() == ref.keys()
    fp32_err = max(np.abs(fp32[k] - ref[k]).max() for k in ref) / scale
    bf16_err = max(np.abs(bf16[k] - ref[k]).max() for k in ref) / scale
    print("max |view logit - reference| / max |logit|: float32", fp32_err, "bf16", bf16_err)
    assert fp32_err < 1e-5, fp32_err
    assert bf16_err < 0.03, bf16_err


def test_load_detector_gives_bf16_weights_sdpa_attention_and_cached_adapters(setup):
    """The fast path's ingredients: weights stored in bf16 (no autocast re-casting), SDPA attention, and
    adapters generated once and reused across calls."""
    from hyperdet_hf.inference import load_detector

    model_dir, _ = setup
    model, _ = load_detector(model_dir, dtype="bfloat16", device="cpu")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16} and not model.training
    assert model.hyperdet.backbone.config._attn_implementation == "sdpa"
    state = model.hyperdet._adapter_state
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        first = model(pixel_values=x).view_logits
        generated = state.generations
        second = model(pixel_values=x).view_logits
    assert generated == 1 and state.generations == 1 and torch.equal(first, second)
