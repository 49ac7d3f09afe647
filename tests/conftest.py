"""Shared fixtures: tiny random-weight CLIP configs, so every test runs offline in seconds."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
from transformers import CLIPVisionModelWithProjection

from hyperdet_hf import HyperDetConfig, HyperDetForImageClassification

TINY_VISION = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=4,
    num_attention_heads=2,
    patch_size=8,
    image_size=32,
    projection_dim=16,
)


def tiny_config(**overrides) -> HyperDetConfig:
    kwargs = dict(vision_config=dict(TINY_VISION), tuned_layers=[2, 3], lora_rank=4)
    kwargs.update(overrides)
    return HyperDetConfig(**kwargs)


def randomize_adapters(model, std: float = 0.2, seed: int = 0) -> None:
    """Give the zero-initialised B heads random values, so adapters are non-zero (as after training)."""
    g = torch.Generator().manual_seed(seed)
    net = model.hyperdet.hyper_lora if hasattr(model, "hyperdet") else model
    with torch.no_grad():
        for p in net.head_B.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)


def plain_backbone(detector, task: int | None = None) -> CLIPVisionModelWithProjection:
    """An ordinary CLIPVisionModelWithProjection with the detector's backbone weights; with ``task``,
    each tuned fc1/fc2 has ``scaling * lora_B @ lora_A`` of that task merged into its weight."""
    body = detector.hyperdet
    plain = CLIPVisionModelWithProjection(body.config.vision_config).eval()
    state = {}
    for key, value in body.backbone.state_dict().items():
        state[key.replace(".base_layer.", ".")] = value.clone()
    if task is not None:
        for layer in body.config.tuned_layers:
            for position in body.config.target_modules:
                lora_A, lora_B = body.hyper_lora.generate(task, layer, position)
                key = f"vision_model.encoder.layers.{layer}.mlp.{position}.weight"
                state[key] = state[key] + body.config.lora_scaling * (lora_B @ lora_A).detach()
    plain.load_state_dict(state, strict=True)
    return plain


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return HyperDetForImageClassification(tiny_config()).eval()


@pytest.fixture
def pixels():
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 3, 32, 32, generator=g)
