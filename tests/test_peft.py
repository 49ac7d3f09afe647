"""Hyper-LoRA as a PEFT method on a plain CLIPVisionModelWithProjection."""

import json

import pytest
import torch
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from hyperdet_hf import HyperLoraConfig
from hyperdet_hf.hyper_lora import Linear as HyperLoraLinear

from .conftest import TINY_VISION


@pytest.fixture
def base_and_state():
    torch.manual_seed(0)
    base = CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY_VISION)).eval()
    return base, {k: v.clone() for k, v in base.state_dict().items()}


def _peft(base, **kw):
    config = HyperLoraConfig(r=4, target_modules=["fc1", "fc2"], layers_to_transform=[1, 3], num_tasks=6, **kw)
    model = get_peft_model(base, config)
    net = model.base_model.hyperlora_net["default"]
    with torch.no_grad():
        for p in net.head_B.parameters():
            p.normal_(0, 0.2)
    return model.eval(), net


def _merged_plain(state, net, task, scaling=1.0):
    plain = CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY_VISION)).eval()
    merged = dict(state)
    for layer in net.layer_ids:
        for position in ("fc1", "fc2"):
            a, b = net.generate(task, layer, position)
            key = f"vision_model.encoder.layers.{layer}.mlp.{position}.weight"
            merged[key] = state[key] + scaling * (b @ a).detach()
    plain.load_state_dict(merged)
    return plain


def test_exactly_the_requested_linears_are_wrapped(base_and_state):
    model, _ = _peft(base_and_state[0])
    wrapped = sorted(n for n, m in model.named_modules() if isinstance(m, HyperLoraLinear))
    assert wrapped == [
        f"base_model.model.vision_model.encoder.layers.{i}.mlp.{p}" for i in (1, 3) for p in ("fc1", "fc2")
    ]
    for name, module in model.named_modules():
        if isinstance(module, HyperLoraLinear):
            assert type(module.base_layer) is nn.Linear
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".hyperlora_net.default." in n for n in trainable)


def test_default_task_is_the_last_and_other_tasks_are_selectable(base_and_state):
    base, state = base_and_state
    model, net = _peft(base)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(pixel_values=x).image_embeds
        torch.testing.assert_close(out, _merged_plain(state, net, 5)(pixel_values=x).image_embeds, atol=1e-5, rtol=1e-5)
        with model.base_model.use_task(2):
            out2 = model(pixel_values=x).image_embeds
        torch.testing.assert_close(out2, _merged_plain(state, net, 2)(pixel_values=x).image_embeds, atol=1e-5, rtol=1e-5)
        # a view-major batch: block v uses task v
        with model.base_model.use_task([0, 4]):
            both = model(pixel_values=torch.cat([x, x])).image_embeds
        torch.testing.assert_close(both[:2], _merged_plain(state, net, 0)(pixel_values=x).image_embeds, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(both[2:], _merged_plain(state, net, 4)(pixel_values=x).image_embeds, atol=1e-5, rtol=1e-5)
        # per-row task ids give the same as the view-major layout
        with model.base_model.use_task(row_tasks=torch.tensor([0, 0, 4, 4])):
            rows = model(pixel_values=torch.cat([x, x])).image_embeds
        torch.testing.assert_close(rows, both, atol=1e-5, rtol=1e-5)


def test_save_and_reload_reproduce_outputs(base_and_state, tmp_path):
    base, state = base_and_state
    model, _ = _peft(base)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(pixel_values=x).image_embeds
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == "HYPERLORA" and config["r"] == 4 and config["layers_to_transform"] == [1, 3]
    weights = load_file(tmp_path / "adapter_model.safetensors")
    assert weights and all(k.startswith("base_model.hyperlora_net.") and ".default." not in k for k in weights)
    fresh = CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY_VISION)).eval()
    fresh.load_state_dict(state)
    loaded = PeftModel.from_pretrained(fresh, tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(pixel_values=x).image_embeds, ref)


def test_training_through_peft_changes_only_the_hypernetwork(base_and_state):
    base, state = base_and_state
    model, _ = _peft(base)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = torch.randn(2, 3, 32, 32)
    for _ in range(2):
        loss = model(pixel_values=x).image_embeds.pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    for key, value in model.base_model.model.state_dict().items():
        plain_key = key.replace(".base_layer.", ".")
        assert torch.equal(value, state[plain_key]), key


def test_merge_and_unload_bakes_in_the_default_task(base_and_state):
    base, state = base_and_state
    model, net = _peft(base)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(pixel_values=x).image_embeds
        merged = model.merge_and_unload()
    assert not any(isinstance(m, HyperLoraLinear) for m in merged.modules())
    with torch.no_grad():
        torch.testing.assert_close(merged(pixel_values=x).image_embeds, ref, atol=1e-5, rtol=1e-5)


def test_config_validation():
    with pytest.raises(ValueError, match="HyperLoraConfig.r"):
        HyperLoraConfig(r=0)
    with pytest.raises(ValueError, match="default_task"):
        HyperLoraConfig(num_tasks=3, default_task=3)
