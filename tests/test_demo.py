"""`hyperdet demo --quick` end to end, as a user runs it (a real subprocess of the console command)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hyperdet_hf.proxy_benchmark import FAMILIES, SEEN_FAMILIES


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    exe = shutil.which("hyperdet", path=str(Path(sys.executable).parent)) or "hyperdet"
    proc = subprocess.run(
        [exe, "demo", "--quick", "--variants", "linear_probe", "hyperdet", "--output_dir", str(out)],
        capture_output=True, text=True, timeout=900, env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def test_report_has_a_row_per_family(demo):
    out, stdout = demo
    report = (out / "REPORT.md").read_text()
    for family in FAMILIES:
        label = f"| {family} (seen) |" if family in SEEN_FAMILIES else f"| {family} |"
        assert label in report, family
    assert "| family | linear_probe | hyperdet |" in report
    assert "done in" in stdout and "REPORT.md" in stdout


def test_hyperdet_learns_the_seen_families(demo):
    out, _ = demo
    summary = json.loads((out / "demo_summary.json").read_text())
    hyper = summary["comparison"]["summary"]["hyperdet"]
    assert hyper["seen_acc"] >= 0.7, hyper  # chance is 0.5
    assert hyper["seen_ap"] >= 0.8, hyper
    # the table's numbers are the evaluation's own
    results = json.loads((out / "eval" / "hyperdet" / "results.json").read_text())
    for family in FAMILIES:
        assert summary["comparison"]["per_family"]["hyperdet"][family]["acc"] == results[family]["acc"]


def test_hub_folder_reloads_and_pipeline_agrees(demo):
    out, _ = demo
    final = out / "runs" / "hyperdet" / "final"
    config = json.loads((final / "config.json").read_text())
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForImageClassification"}
    assert (final / "model.safetensors").exists() and (final / "preprocessor_config.json").exists()
    card = (final / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["pipeline_tag"] == "image-classification" and meta["model-index"]
    samples = json.loads((out / "demo_summary.json").read_text())["pipeline_samples"]
    assert len(samples) == 4
    for s in samples:
        assert abs(s["pipeline_p_fake"] - s["model_p_fake"]) < 1e-5


def test_training_configs_are_rerunnable_yaml(demo):
    out, _ = demo
    config = yaml.safe_load((out / "configs" / "hyperdet.yaml").read_text())
    assert config["backbone"] == "random" and config["model"]["adapter_type"] == "hyper"
    probe = yaml.safe_load((out / "configs" / "linear_probe.yaml").read_text())
    assert probe["model"]["adapter_type"] == "none" and probe["model"]["view_source"] == "original"


def test_demo_refuses_to_replace_a_foreign_folder(tmp_path):
    (tmp_path / "thesis.tex").write_text("years of work")
    exe = shutil.which("hyperdet", path=str(Path(sys.executable).parent)) or "hyperdet"
    proc = subprocess.run([exe, "demo", "--quick", "--output_dir", str(tmp_path)], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 2 and "refusing to replace" in proc.stderr
    assert (tmp_path / "thesis.tex").read_text() == "years of work"
