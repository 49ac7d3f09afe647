import pytest

from hyperdet_hf import HyperDetConfig

from .conftest import TINY_VISION, tiny_config


def test_paper_defaults():
    c = HyperDetConfig()
    v = c.vision_config
    assert (v.hidden_size, v.num_hidden_layers, v.num_attention_heads, v.intermediate_size) == (1024, 24, 16, 4096)
    assert (v.patch_size, v.image_size, v.projection_dim) == (14, 224, 768)
    assert c.model_type == "hyperdet"
    assert c.lora_rank == 16 and c.lora_alpha == 16 and c.lora_scaling == 1.0
    assert c.tuned_layers == list(range(16, 24))
    assert c.target_modules == ["fc1", "fc2"]
    assert c.loss_alpha == 0.1 and c.fusion == "mean" and c.cascade_threshold == 0.0
    assert c.id2label == {0: "real", 1: "fake"} and c.label2id == {"real": 0, "fake": 1}


def test_alpha_follows_rank_and_tuned_layers_follow_depth():
    c = tiny_config(lora_rank=8, tuned_layers=None)
    assert c.lora_alpha == 8
    assert c.tuned_layers == [0, 1, 2, 3]  # a 4-block backbone: "last 8" is all of them


def test_json_round_trip(tmp_path):
    c = tiny_config(fusion="cascade", cascade_threshold=-0.5, tuned_layers=[3, 1], loss_alpha=0.3)
    c.save_pretrained(tmp_path)
    back = HyperDetConfig.from_pretrained(tmp_path)
    assert back.tuned_layers == [1, 3]
    assert back.fusion == "cascade" and back.cascade_threshold == -0.5 and back.loss_alpha == 0.3
    assert back.vision_config.hidden_size == TINY_VISION["hidden_size"]
    assert back.id2label == {0: "real", 1: "fake"}
    assert back.to_dict()["vision_config"] == c.to_dict()["vision_config"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("tuned_layers", [4]),
        ("tuned_layers", [-1]),
        ("tuned_layers", []),
        ("tuned_layers", [2, 2]),
        ("tuned_layers", ["a"]),
        ("lora_rank", 0),
        ("lora_rank", 2.5),
        ("lora_alpha", -1),
        ("loss_alpha", 1.5),
        ("loss_alpha", -0.1),
        ("fusion", "max"),
        ("target_modules", ["q_proj"]),
        ("target_modules", []),
        ("target_modules", "fc1"),
        ("target_modules", ["fc1", "fc1"]),
        ("srm_scale", 0),
        ("adapter_type", "moe"),
        ("view_source", "jpeg"),
    ],
)
def test_invalid_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=rf"HyperDetConfig\.{field}"):
        tiny_config(**{field: value})
