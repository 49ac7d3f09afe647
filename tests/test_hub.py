"""Hub round trip: safetensors + flat modeling files, loaded by Auto classes and the pipeline in a process
where ``hyperdet_hf`` cannot be imported."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import CLIPConfig, CLIPModel, CLIPVisionModel, CLIPVisionModelWithProjection

from hyperdet_hf import HyperDetForImageClassification, HyperDetModel, default_image_processor

from .conftest import TINY_VISION, randomize_adapters, tiny_config

def same(a, b):
    """Equal up to float noise: identical weights and inputs can differ in the last bit across instances
    (CPU kernels pick vector paths by memory alignment)."""
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


MODELING_FILES = {"configuration_hyperdet.py", "modeling_hyperdet.py", "hyper_lora.py", "srm.py"}


@pytest.fixture
def saved(tmp_path, tiny_model):
    randomize_adapters(tiny_model)
    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    default_image_processor(crop_size=32).save_pretrained(folder)
    return folder, tiny_model


def test_save_writes_safetensors_config_and_code(saved):
    folder, _ = saved
    files = set(os.listdir(folder))
    assert "model.safetensors" in files
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    assert MODELING_FILES <= files
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "hyperdet"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_hyperdet.HyperDetConfig",
        "AutoModel": "modeling_hyperdet.HyperDetModel",
        "AutoModelForImageClassification": "modeling_hyperdet.HyperDetForImageClassification",
    }
    keys = load_file(folder / "model.safetensors").keys()
    assert any(k.startswith("hyperdet.hyper_lora.head_B.fc1") for k in keys)
    # the hypernetwork is stored once, not under every wrapped layer
    assert not any("mlp.fc1." in k and "hyper_lora" in k for k in keys)
    # modeling files import each other only relatively (trust_remote_code copies them flat)
    for name in MODELING_FILES:
        text = (folder / name).read_text()
        assert "import hyperdet_hf" not in text and "from hyperdet_hf" not in text


def test_reload_in_process_gives_identical_numbers(saved, pixels):
    folder, model = saved
    loaded = HyperDetForImageClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        a, b = model(pixel_values=pixels), loaded(pixel_values=pixels)
    same(a.view_logits, b.view_logits)
    body = HyperDetModel.from_pretrained(folder).eval()
    with torch.no_grad():
        same(body(pixel_values=pixels).logits, a.logits)


ISOLATED = textwrap.dedent(
    """
    import json, sys
    sys.modules["hyperdet_hf"] = None  # this process must not be able to import the package
    try:
        import hyperdet_hf  # noqa: F401
        raise SystemExit("hyperdet_hf importable")
    except ImportError:
        pass
    import torch
    from PIL import Image
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoModelForImageClassification, pipeline

    folder, inputs, out = sys.argv[1], sys.argv[2], sys.argv[3]
    x = load_file(inputs)["x"]
    result = {}
    for name, cls in [("auto", AutoModel), ("clf", AutoModelForImageClassification)]:
        model = cls.from_pretrained(folder, trust_remote_code=True).eval()
        with torch.no_grad():
            o = model(pixel_values=x)
        result[name] = {"class": type(model).__name__, "module": type(model).__module__,
                        "logits": o.logits.tolist(), "view_logits": o.view_logits.tolist()}
    pipe = pipeline("image-classification", model=folder, trust_remote_code=True)
    preds = pipe(Image.open(sys.argv[4]))
    result["pipeline"] = {p["label"]: p["score"] for p in preds}
    # a model loaded through remote code re-saves into a loadable folder
    model.save_pretrained(sys.argv[5])
    json.dump(result, open(out, "w"))
    """
)


def test_remote_code_and_pipeline_without_the_package(saved, pixels, tmp_path):
    folder, model = saved
    inputs = tmp_path / "x.safetensors"
    save_file({"x": pixels.contiguous()}, inputs)
    image_path = tmp_path / "img.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(image_path)
    script = tmp_path / "isolated.py"
    script.write_text(ISOLATED)
    out = tmp_path / "out.json"
    resaved = tmp_path / "resaved"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), PYTHONPATH="")
    proc = subprocess.run(
        [sys.executable, str(script), str(folder), str(inputs), str(out), str(image_path), str(resaved)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    with torch.no_grad():
        ref = model(pixel_values=pixels)
    for name in ("auto", "clf"):
        assert result[name]["module"].startswith("transformers_modules")
        torch.testing.assert_close(torch.tensor(result[name]["logits"]), ref.logits, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(torch.tensor(result[name]["view_logits"]), ref.view_logits, atol=1e-6, rtol=1e-6)
    assert result["clf"]["class"] == "HyperDetForImageClassification"
    # pipeline: labels real/fake, P(fake) equal to the model's on the processed image
    assert set(result["pipeline"]) == {"real", "fake"}
    processed = default_image_processor(crop_size=32)(images=Image.open(image_path), return_tensors="pt")
    with torch.no_grad():
        p_fake = torch.sigmoid(model(**processed).fused_logit).item()
    assert abs(result["pipeline"]["fake"] - p_fake) < 1e-5
    assert abs(result["pipeline"]["real"] + result["pipeline"]["fake"] - 1) < 1e-5
    reloaded = HyperDetForImageClassification.from_pretrained(resaved).eval()
    assert json.loads((resaved / "config.json").read_text())["auto_map"]["AutoModel"] == "modeling_hyperdet.HyperDetModel"
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values=pixels).logits, ref.logits)


def test_missing_or_unexpected_weights_are_refused(saved):
    folder, _ = saved
    weights = load_file(folder / "model.safetensors")
    dropped = {k: v for k, v in weights.items() if "head_B.fc2" not in k}
    save_file(dropped, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="missing_keys.*head_B"):
        HyperDetForImageClassification.from_pretrained(folder)
    extra = dict(weights, **{"hyperdet.stray.weight": torch.zeros(2)})
    save_file(extra, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="unexpected_keys.*stray"):
        HyperDetForImageClassification.from_pretrained(folder)


def test_other_architecture_is_refused(tmp_path):
    vision = CLIPVisionModelWithProjection(CLIPVisionModelWithProjection.config_class(**TINY_VISION))
    vision.save_pretrained(tmp_path / "clip")
    config = tiny_config()
    config.save_pretrained(tmp_path / "clip")  # a HyperDet config over CLIP weights
    with pytest.raises(ValueError, match="not a complete HyperDetForImageClassification checkpoint"):
        HyperDetForImageClassification.from_pretrained(tmp_path / "clip")


def test_pickle_checkpoints_are_never_loaded(saved):
    folder, model = saved
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises((OSError, ValueError)):
        HyperDetForImageClassification.from_pretrained(folder)
    with pytest.raises(ValueError, match="safetensors only"):
        HyperDetForImageClassification.from_pretrained(folder, use_safetensors=False)
    with pytest.raises(ValueError, match="safetensors only"):
        model.save_pretrained(folder / "again", safe_serialization=False)


# ---- from_clip ---------------------------------------------------------------------------------------
def _assert_backbone_equals(detector, vision_state):
    own = {k.replace(".base_layer.", "."): v for k, v in detector.hyperdet.backbone.state_dict().items()}
    assert set(own) == set(vision_state)
    for key, value in vision_state.items():
        assert torch.equal(own[key], value), key


def test_from_clip_loads_clip_model_folder_exactly(tmp_path):
    torch.manual_seed(0)
    clip = CLIPModel(CLIPConfig(
        vision_config=TINY_VISION,
        text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=64),
        projection_dim=TINY_VISION["projection_dim"],
    ))
    clip.save_pretrained(tmp_path / "clip")
    detector = HyperDetForImageClassification.from_clip(tmp_path / "clip", tuned_layers=[3], lora_rank=2)
    assert detector.config.tuned_layers == [3] and detector.config.lora_rank == 2
    expected = {k.removeprefix(""): v for k, v in clip.state_dict().items() if k.startswith(("vision_model.", "visual_projection."))}
    _assert_backbone_equals(detector, expected)


def test_from_clip_loads_vision_with_projection_folder_exactly(tmp_path):
    torch.manual_seed(1)
    vision = CLIPVisionModelWithProjection(CLIPVisionModelWithProjection.config_class(**TINY_VISION))
    vision.save_pretrained(tmp_path / "v")
    detector = HyperDetForImageClassification.from_clip(tmp_path / "v", tuned_layers=[2, 3], lora_rank=4)
    _assert_backbone_equals(detector, vision.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # fresh adapters are zero: the original view is plain CLIP
        ours = detector.hyperdet.encode(x, (5,))
        torch.testing.assert_close(ours, vision(pixel_values=x).image_embeds)


def test_from_clip_refuses_bare_vision_model(tmp_path):
    bare = CLIPVisionModel(CLIPVisionModel.config_class(**TINY_VISION))
    bare.save_pretrained(tmp_path / "bare")
    with pytest.raises(ValueError, match="visual_projection"):
        HyperDetForImageClassification.from_clip(tmp_path / "bare")


@pytest.mark.parametrize("adapter_type", ["lora", "none"])
def test_baseline_variants_round_trip(tmp_path, pixels, adapter_type):
    torch.manual_seed(0)
    model = HyperDetForImageClassification(tiny_config(adapter_type=adapter_type, view_source="original")).eval()
    model.save_pretrained(tmp_path / "m")
    loaded = HyperDetForImageClassification.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.adapter_type == adapter_type and loaded.config.view_source == "original"
    with torch.no_grad():
        same(loaded(pixel_values=pixels).logits, model(pixel_values=pixels).logits)
