"""Model cards: YAML metadata, model-index numbers equal results.json, sections, package data, the generator."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from hyperdet_hf.evaluation import EvalConfig, run_evaluation
from hyperdet_hf.model_card import read_card_metadata, write_model_card

from .eval_helpers import REPO, make_benchmark, save_tiny_model

RUN_CONFIG = {
    "backbone": "openai/clip-vit-large-patch14",
    "train_data": "/data/progan_train",
    "val_data": "/data/progan_val",
    "max_steps": 1000,
    "learning_rate": 1e-4,
    "per_device_batch_size": 32,
    "seed": 0,
    "blur_prob": 0.1,
    "jpeg_prob": 0.1,
    "model_overrides": {"lora_rank": 16, "fusion": "mean"},
    "output_dir": Path("/runs/hyperdet-vitl14"),
    "resume_from_checkpoint": None,
}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    base = tmp_path_factory.mktemp("card")
    model = save_tiny_model(base / "runs" / "final")
    bench = make_benchmark(base / "bench")
    out = base / "eval"
    run_evaluation(EvalConfig(model=str(model), data=[str(bench)], output_dir=str(out), dtype="float32",
                              num_workers=0, progress=False, plots=False))
    return model, out


def _index(meta):
    (entry,) = meta["model-index"]
    return {r["dataset"]["config"]: {m["type"]: m["value"] for m in r["metrics"]} for r in entry["results"]}


def test_card_metadata_and_numbers_equal_results(evaluated, tmp_path):
    model, out = evaluated
    results = json.loads((out / "results.json").read_text())
    folder = tmp_path / "final"
    shutil.copytree(model, folder)
    path = write_model_card(folder, run_config=dict(RUN_CONFIG, eval_dataset="UnivFD test"),
                            val_results={"acc": 0.97, "ap": 0.995, "loss": 0.12}, eval_results=results)
    assert path == folder / "README.md"
    meta = read_card_metadata(path)
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "image-classification"
    assert meta["license"] == "apache-2.0" and meta["base_model"] == "openai/clip-vit-large-patch14"
    assert "datasets" not in meta  # local training folders are not Hub datasets
    index = _index(meta)
    assert set(index) == set(results)  # every generator and the mean
    for gen, metrics in index.items():
        assert metrics == {"accuracy": results[gen]["acc"], "average_precision": results[gen]["ap"]}
    (entry,) = meta["model-index"]
    assert entry["name"] == "hyperdet-vitl14"  # a run's `final/` folder is named after the run
    assert all(r["task"]["type"] == "image-classification" for r in entry["results"])
    text = path.read_text()
    for needle in ("## Intended use", "trust_remote_code=True", 'pipeline("image-classification"', "## Training recipe",
                   "| learning rate | 0.0001 |", "## Evaluation protocol", "center crop 32, no resize", "JPEG",
                   "Resizing", "Threshold transfer", "Unseen generators", "@misc{cao2024hyperdet", "2410.06044",
                   "| tuned blocks (0-based) | [2, 3] |", "Table 1: accuracy", "avg. Acc", "mAP",
                   f"| {100 * results['mean']['acc']:.2f} |", "Validation at the end of training", "| ap | 0.9950 |"):
        assert needle in text, needle


def test_card_in_a_staging_folder_is_named_after_the_run(tmp_path):
    """training writes the card into ``<output_dir>/.tmp-final`` and renames it to ``final`` afterwards."""
    path = write_model_card(tmp_path / "run" / ".tmp-final", run_config={"output_dir": str(tmp_path / "my-run")},
                            val_results={"acc": 0.5, "ap": None})
    assert path.read_text().startswith("---\n") and "# my-run" in path.read_text() and "| ap | — |" in path.read_text()
    assert write_model_card(tmp_path / "run2" / "final", run_config={}).read_text().count("# run2\n") == 1


def test_card_without_results_and_odd_config(tmp_path):
    path = write_model_card(tmp_path / "m", run_config={"backbone": "/local/clip", "weird": {"a": [1, 2]},
                                                        "tags": ["extra"], "train_data": "org/dataset",
                                                        "license": "mit", "hub_model_id": "org/hyperdet-x"})
    meta = read_card_metadata(path)
    assert "model-index" not in meta and "base_model" not in meta
    assert meta["license"] == "mit" and meta["datasets"] == ["org/dataset"] and "extra" in meta["tags"]
    text = path.read_text()
    assert "No evaluation results were recorded" in text and 'from_pretrained("org/hyperdet-x"' in text
    assert "# hyperdet-x" in text
    assert read_card_metadata(write_model_card(tmp_path / "n", run_config={}))["pipeline_tag"] == "image-classification"


def test_generate_card_command(evaluated, tmp_path):
    model, out = evaluated
    folder = tmp_path / "final"
    shutil.copytree(model, folder)
    (tmp_path / "run_config.yaml").write_text(yaml.safe_dump({"backbone": "openai/clip-vit-large-patch14", "seed": 3}))
    proc = subprocess.run([sys.executable, "model_cards/generate_card.py", "--model", str(folder), "--eval_results",
                           str(out / "results.json")], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 0, proc.stderr
    meta = read_card_metadata(folder / "README.md")
    results = json.loads((out / "results.json").read_text())
    assert {g: m["accuracy"] for g, m in _index(meta).items()} == {g: r["acc"] for g, r in results.items()}
    assert meta["base_model"] == "openai/clip-vit-large-patch14"  # run settings found beside the run folder
    (res,) = [r for r in meta["model-index"][0]["results"] if r["dataset"]["config"] == "mean"]
    assert res["dataset"]["name"].startswith("bench")  # the benchmark named from eval_info.json


def test_template_and_metric_module_ship_in_the_wheel(tmp_path):
    """A non-editable install needs both as package data: build a wheel from a copy of the sources."""
    src = tmp_path / "src"
    shutil.copytree(REPO / "hyperdet_hf", src / "hyperdet_hf", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src),
                           "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "hyperdet_hf/templates/model_card.md" in names
    assert "hyperdet_hf/metrics/hyperdet_detection/hyperdet_detection.py" in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "hyperdet = hyperdet_hf.cli:main" in entry_points
