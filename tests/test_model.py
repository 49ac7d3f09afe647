import math

import pytest
import torch
from torch import nn

from hyperdet_hf import HyperDetForImageClassification, HyperDetModel
from hyperdet_hf.hyper_lora import Linear as HyperLoraLinear
from hyperdet_hf.modeling_hyperdet import cascade_fuse, hyperdet_loss

from .conftest import plain_backbone, randomize_adapters, tiny_config


def test_exactly_the_tuned_mlps_are_wrapped(tiny_model):
    backbone = tiny_model.hyperdet.backbone
    for i, layer in enumerate(backbone.vision_model.encoder.layers):
        for name in ("fc1", "fc2"):
            module = getattr(layer.mlp, name)
            if i in (2, 3):
                assert isinstance(module, HyperLoraLinear)
                assert type(module.base_layer) is nn.Linear
            else:
                assert type(module) is nn.Linear
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            assert type(getattr(layer.self_attn, name)) is nn.Linear
    assert type(backbone.visual_projection) is nn.Linear
    assert isinstance(tiny_model.hyperdet.classifier, nn.Linear)
    assert tiny_model.hyperdet.classifier.out_features == 1
    assert tiny_model.hyperdet.classifier.in_features == 16


def test_only_fc1_when_configured():
    model = HyperDetForImageClassification(tiny_config(target_modules=["fc1"], tuned_layers=[3]))
    layers = model.hyperdet.backbone.vision_model.encoder.layers
    assert isinstance(layers[3].mlp.fc1, HyperLoraLinear)
    assert type(layers[3].mlp.fc2) is nn.Linear


def test_generate_shapes(tiny_model):
    net = tiny_model.hyperdet.hyper_lora
    for task in range(6):
        for layer in (2, 3):
            a, b = net.generate(task, layer, "fc1")
            assert a.shape == (4, 32) and b.shape == (64, 4)
            a, b = net.generate(task, layer, "fc2")
            assert a.shape == (4, 64) and b.shape == (32, 4)
    with pytest.raises(ValueError, match="not adapted"):
        net.generate(0, 1, "fc1")
    with pytest.raises(ValueError, match="task"):
        net.generate(6, 2, "fc1")


def test_generate_all_matches_generate(tiny_model):
    randomize_adapters(tiny_model)
    net = tiny_model.hyperdet.hyper_lora
    everything = net.generate_all()
    for task in range(6):
        for row, layer in enumerate(net.layer_ids):
            for position in ("fc1", "fc2"):
                a, b = net.generate(task, layer, position)
                torch.testing.assert_close(everything[position][0][task, row], a)
                torch.testing.assert_close(everything[position][1][task, row], b)


def test_init_adapters_are_zero_and_views_match_plain_backbone(tiny_model, pixels):
    body = tiny_model.hyperdet
    for task in range(6):
        for layer in (2, 3):
            for position in ("fc1", "fc2"):
                assert torch.count_nonzero(body.hyper_lora.generate(task, layer, position)[1]) == 0
    plain = plain_backbone(tiny_model)
    views = body.make_views(pixels)
    with torch.no_grad():
        features = body.encode(views, tuple(range(6)))
        expected = plain(pixel_values=views).image_embeds
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-5)


def test_each_view_equals_plain_backbone_with_merged_adapter(tiny_model, pixels):
    randomize_adapters(tiny_model)
    body = tiny_model.hyperdet
    with torch.no_grad():
        out = tiny_model(pixel_values=pixels)
        views = body.make_views(pixels).view(6, 3, 3, 32, 32)
        for v in range(6):
            plain = plain_backbone(tiny_model, task=v)
            z = body.classifier(plain(pixel_values=views[v]).image_embeds).squeeze(-1)
            torch.testing.assert_close(out.view_logits[:, v], z, atol=1e-5, rtol=1e-5)
    # the views really differ once adapters are non-zero
    assert out.view_logits.std(1).min() > 0


def test_views_are_ordered_filtered_then_original(tiny_model, pixels):
    views = tiny_model.hyperdet.make_views(pixels)
    assert views.shape == (18, 3, 32, 32)
    assert torch.equal(views[15:], pixels)


def test_logits_are_two_class_with_fused_probability(tiny_model, pixels):
    randomize_adapters(tiny_model)
    with torch.no_grad():
        out = tiny_model(pixel_values=pixels)
    assert out.logits.shape == (3, 2) and out.view_logits.shape == (3, 6)
    z = out.view_logits.mean(1)
    torch.testing.assert_close(out.logits.softmax(-1)[:, 1], torch.sigmoid(z))
    torch.testing.assert_close(out.fused_logit, z)


def test_loss_is_eq9_recomputed_from_view_logits(tiny_model, pixels):
    randomize_adapters(tiny_model)
    labels = torch.tensor([0, 1, 1])
    out = tiny_model(pixel_values=pixels, labels=labels)
    z, y = out.view_logits.detach(), labels.float()

    def bce(logit):
        return -(y * torch.log(torch.sigmoid(logit)) + (1 - y) * torch.log(1 - torch.sigmoid(logit))).mean()

    expected = 0.1 * bce(z[:, 5]) + 0.9 * sum(bce(z[:, v]) for v in range(5)) / 5
    torch.testing.assert_close(out.loss.detach(), expected, atol=1e-5, rtol=1e-5)
    assert torch.isclose(hyperdet_loss(z, labels, 0.1), expected, atol=1e-5)


def test_cascade_rule_matches_algorithm_2():
    z = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 1.0], [-3.0, 5.0, 5.0, 5.0, 5.0, 1.0], [1.0, -4.0, 9.0, 9.0, 9.0, 1.0]])
    fused = cascade_fuse(z, threshold=0.0)
    # row 0: y=2, +2=4, +3=7, +4=11, +5=16; row 1: y=-2 stops; row 2: y=2, +(-4)=-2, stops
    torch.testing.assert_close(fused, torch.tensor([16.0, -2.0, -2.0]))


def _count_encoded_rows(model):
    counted = []
    handle = model.hyperdet.backbone.vision_model.embeddings.register_forward_hook(
        lambda mod, inp, out: counted.append(out.shape[0])
    )
    return counted, handle


@pytest.mark.parametrize("threshold", [-1e9, 0.0, 1e9])
def test_cascade_fusion_skips_views_and_matches_rule(threshold, pixels):
    torch.manual_seed(0)
    model = HyperDetForImageClassification(tiny_config(fusion="cascade", cascade_threshold=threshold)).eval()
    randomize_adapters(model)
    counted, handle = _count_encoded_rows(model)
    with torch.no_grad():
        out = model(pixel_values=pixels)
        full = model.hyperdet.all_view_logits(pixels)
    handle.remove()
    computed = ~torch.isnan(out.view_logits)
    assert computed[:, [0, 5]].all()
    # computed views agree with the all-views pass, and the fused logit is the rule on them
    torch.testing.assert_close(out.view_logits[computed], full[computed], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.fused_logit, cascade_fuse(full, threshold), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.logits.softmax(-1)[:, 1], torch.sigmoid(out.fused_logit))
    rows = sum(counted[:-1])  # the last count is the reference all-views pass
    assert rows == int(computed.sum())
    if threshold > 1e8:
        assert rows == 2 * 3  # only views 1 and 6
    if threshold < -1e8:
        assert rows == 6 * 3


def test_cascade_with_labels_computes_all_views(pixels):
    model = HyperDetForImageClassification(tiny_config(fusion="cascade", cascade_threshold=1e9))
    out = model(pixel_values=pixels, labels=torch.tensor([0, 1, 0]))
    assert not torch.isnan(out.view_logits).any()
    assert out.loss is not None and torch.isfinite(out.loss)


def test_only_hypernetwork_and_head_train(tiny_model, pixels):
    model = tiny_model.train()
    frozen = {k: v.clone() for k, v in model.hyperdet.backbone.state_dict().items()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("hyperdet.hyper_lora.", "hyperdet.classifier.")) for n in trainable)
    assert all(not p.requires_grad for p in model.hyperdet.backbone.parameters())
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    labels = torch.tensor([0, 1, 1])
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    for _ in range(3):
        loss = model(pixel_values=pixels, labels=labels).loss
        loss.backward()
        for n, p in model.named_parameters():
            assert (p.grad is not None) == (n in trainable), n
        opt.step()
        opt.zero_grad()
    for k, v in model.hyperdet.backbone.state_dict().items():
        assert torch.equal(v, frozen[k]), k
    # B heads moved away from zero, so adapters are now non-zero
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters() if "head_B" in n)


def test_training_reduces_loss_on_a_separable_batch(tiny_model):
    g = torch.Generator().manual_seed(3)
    real = torch.randn(4, 3, 32, 32, generator=g) * 0.2
    fake = real + torch.randn(4, 3, 32, 32, generator=g).sign() * 0.3  # high-frequency noise
    x, y = torch.cat([real, fake]), torch.tensor([0] * 4 + [1] * 4)
    model = tiny_model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(32):
        loss = model(pixel_values=x, labels=y).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert min(losses[-4:]) < 0.5 * losses[0]


def test_gradient_accumulation_regenerates_adapters_per_forward(tiny_model, pixels):
    model = tiny_model.train()
    state = model.hyperdet._adapter_state
    start = state.generations
    for _ in range(2):  # two backward passes without an optimizer step in between
        model(pixel_values=pixels, labels=torch.tensor([0, 1, 0])).loss.backward()
    assert state.generations - start == 2


def test_inference_caches_generated_adapters_until_parameters_change(tiny_model, pixels):
    state = tiny_model.hyperdet._adapter_state
    with torch.no_grad():
        first = tiny_model(pixel_values=pixels).view_logits
        n = state.generations
        for _ in range(3):
            again = tiny_model(pixel_values=pixels).view_logits
    assert state.generations == n
    torch.testing.assert_close(first, again)
    randomize_adapters(tiny_model)  # an in-place change, as an optimizer step or load would make
    with torch.inference_mode():
        changed = tiny_model(pixel_values=pixels).view_logits
    assert state.generations == n + 1
    assert not torch.allclose(first, changed)


def test_frozen_prefix_path_equals_clip_forward(tiny_model, pixels):
    randomize_adapters(tiny_model)
    body = tiny_model.hyperdet
    with torch.no_grad():
        ours = body.encode(pixels, (5,))
        theirs = body.backbone(pixel_values=pixels).image_embeds  # default task: the original image
    torch.testing.assert_close(ours, theirs)


def test_prefix_blocks_hold_no_autograd_graph(tiny_model, pixels):
    body = tiny_model.hyperdet
    seen = {}

    def hook(name):
        def record(module, inp, out):
            seen[name] = out.requires_grad

        return record

    layers = body.backbone.vision_model.encoder.layers
    handles = [layers[i].register_forward_hook(hook(i)) for i in range(4)]
    tiny_model.train()(pixel_values=pixels, labels=torch.tensor([0, 1, 0])).loss.backward()
    for h in handles:
        h.remove()
    assert seen == {0: False, 1: False, 2: True, 3: True}


def test_bad_pixel_values_are_refused(tiny_model):
    with pytest.raises(ValueError, match="pixel_values"):
        tiny_model(pixel_values=torch.zeros(3, 32, 32))


def test_auto_model_body_gives_same_outputs(tiny_model, pixels):
    body = tiny_model.hyperdet
    assert isinstance(body, HyperDetModel)
    with torch.no_grad():
        a, b = tiny_model(pixel_values=pixels), body(pixel_values=pixels)
    torch.testing.assert_close(a.logits, b.logits)
    assert math.isclose(float(a.view_logits.sum()), float(b.view_logits.sum()), rel_tol=1e-6)


# ---- baseline variants (same class, other config) ----------------------------------------------------
@pytest.mark.parametrize("adapter_type, view_source", [("lora", "srm"), ("none", "original"), ("hyper", "original")])
def test_baseline_variants_train_only_their_parts(adapter_type, view_source, pixels):
    torch.manual_seed(0)
    model = HyperDetForImageClassification(tiny_config(adapter_type=adapter_type, view_source=view_source))
    trainable = {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == ({"classifier"} if adapter_type == "none" else {"classifier", "hyper_lora"})
    wrapped = any(isinstance(m, HyperLoraLinear) for m in model.modules())
    assert wrapped == (adapter_type != "none")
    views = model.hyperdet.make_views(pixels)
    if view_source == "original":
        assert all(torch.equal(views[v * 3 : (v + 1) * 3], pixels) for v in range(6))
    out = model(pixel_values=pixels, labels=torch.tensor([0, 1, 0]))
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    if adapter_type == "none":  # a linear probe: every view has the same logit
        assert torch.allclose(out.view_logits, out.view_logits[:, :1].expand(-1, 6))


def test_plain_lora_views_equal_merged_backbone(pixels):
    torch.manual_seed(0)
    model = HyperDetForImageClassification(tiny_config(adapter_type="lora")).eval()
    with torch.no_grad():
        for b in model.hyperdet.hyper_lora.lora_B.values():
            b.normal_(0, 0.2)
        out = model(pixel_values=pixels)
        views = model.hyperdet.make_views(pixels).view(6, 3, 3, 32, 32)
        for v in (0, 3, 5):
            z = model.hyperdet.classifier(plain_backbone(model, task=v)(pixel_values=views[v]).image_embeds).squeeze(-1)
            torch.testing.assert_close(out.view_logits[:, v], z, atol=1e-5, rtol=1e-5)


def test_cascade_with_original_views(pixels):
    model = HyperDetForImageClassification(tiny_config(view_source="original", fusion="cascade", cascade_threshold=-1e9))
    randomize_adapters(model)
    with torch.no_grad():
        out = model.eval()(pixel_values=pixels)
        full = model.hyperdet.all_view_logits(pixels)
    torch.testing.assert_close(out.view_logits, full, atol=1e-5, rtol=1e-5)
