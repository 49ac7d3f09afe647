"""The ``hyperdet`` command in real subprocesses: detect (odd files, formats, exit codes), eval, subcommand registry."""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from hyperdet_hf import cli

from .eval_helpers import REPO, direct_p_fake, make_benchmark, run_cli, save_tiny_model, write_images


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("cli") / "model")


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory):
    """Good images in odd modes and sizes, plus files that cannot be read."""
    d = tmp_path_factory.mktemp("odd") / "inputs"
    (d / "sub").mkdir(parents=True)
    rng = np.random.default_rng(4)
    Image.fromarray(rng.integers(0, 256, (40, 44, 3)).astype(np.uint8)).save(d / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (40, 40)).astype(np.uint8), mode="L").save(d / "gray.png")
    Image.fromarray(rng.integers(0, 256, (36, 40, 4)).astype(np.uint8), mode="RGBA").save(d / "sub" / "rgba.png")
    Image.fromarray(rng.integers(0, 65536, (40, 36)).astype(np.uint16)).save(d / "sub" / "deep16.png")
    Image.fromarray(rng.integers(0, 256, (6, 9, 3)).astype(np.uint8)).save(d / "tiny.png")
    good = (d / "rgb.png").read_bytes()
    (d / "corrupt.png").write_bytes(good[: len(good) // 3])  # a truncated PNG
    (d / "text.jpg").write_text("this is text, not a JPEG\n")  # a text file named like an image
    (d / "notes.txt").write_text("not an image extension: ignored in folders\n")
    return d


GOOD = {"rgb.png", "gray.png", "rgba.png", "deep16.png", "tiny.png"}
BAD = {"corrupt.png": "corrupt", "text.jpg": "not-an-image"}


def test_detect_folder_with_odd_files(model_dir, odd_folder):
    proc = run_cli(["detect", odd_folder, "--model", model_dir, "--dtype", "float32", "--batch_size", "3"])
    assert proc.returncode == cli.EXIT_SOME_FAILED, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    by_name = {os.path.basename(r["path"]): r for r in records}
    assert set(by_name) == GOOD | set(BAD)  # one line per file, notes.txt not tried
    for name in GOOD:
        r = by_name[name]
        assert 0.0 <= r["p_fake"] <= 1.0 and r["label"] == ("fake" if r["p_fake"] >= 0.5 else "real")
        assert list(r["view_logits"]) == ["srm_1", "srm_2", "srm_3", "srm_4", "srm_5", "original"]
        assert r["fused_logit"] == pytest.approx(np.mean(list(r["view_logits"].values())), abs=1e-5)
        assert r["p_fake"] == pytest.approx(1 / (1 + np.exp(-r["fused_logit"])), abs=1e-6)
    for name, reason in BAD.items():
        assert by_name[name]["error"] == reason and name in by_name[name]["message"]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and all(any(name in e for name in BAD) for e in errors)
    assert "5 scored, 2 failed" in proc.stderr
    # scores are the model's P(fake) of the center crop
    assert by_name["rgb.png"]["p_fake"] == pytest.approx(direct_p_fake(model_dir, [odd_folder / "rgb.png"])[0], abs=2e-6)


def test_detect_csv_threshold_globs_and_exit_codes(model_dir, odd_folder, tmp_path):
    out = tmp_path / "scores.csv"
    pattern = str(odd_folder / "**" / "*.png")
    proc = run_cli(["detect", pattern, odd_folder / "notes.txt", tmp_path / "missing.png", "--model", model_dir,
                    "--output", out, "--threshold", "0.0", "--no_progress"])
    assert proc.returncode == cli.EXIT_SOME_FAILED, proc.stderr
    rows = list(csv.DictReader(open(out)))
    ok = {os.path.basename(r["path"]): r for r in rows if not r["error"]}
    failed = {os.path.basename(r["path"]): r["error"] for r in rows if r["error"]}
    assert set(ok) == GOOD  # the glob reaches the subfolder, and only .png files
    assert failed == {"corrupt.png": "corrupt", "notes.txt": "not-an-image", "missing.png": "missing"}
    assert all(r["label"] == "fake" for r in ok.values())  # threshold 0: everything is fake
    assert all(-50 < float(r["logit_original"]) < 50 for r in ok.values())

    good_only = tmp_path / "good"
    write_images(good_only, 3, False, np.random.default_rng(0))
    proc = run_cli(["detect", good_only, "--model", model_dir, "--threshold", "1.0"])
    assert proc.returncode == cli.EXIT_OK, proc.stderr
    assert [json.loads(line)["label"] for line in proc.stdout.splitlines()] == ["real"] * 3

    # the same main() in-process (a subprocess each would only add start-up time)
    assert cli.main(["detect", str(tmp_path / "nothing-*.png"), "--model", str(model_dir)]) == cli.EXIT_USAGE
    assert cli.main(["detect", str(good_only), "--model", str(tmp_path / "no-model")]) == cli.EXIT_MODEL
    with pytest.raises(SystemExit) as exc:  # argparse usage errors exit with 2 as well
        cli.main(["detect", "--model", str(model_dir)])
    assert exc.value.code == cli.EXIT_USAGE


def test_eval_command_and_training_script_agree(model_dir, tmp_path):
    bench = make_benchmark(tmp_path / "bench", seed=3)
    a, b = tmp_path / "a", tmp_path / "b"
    proc = run_cli(["eval", "--model", model_dir, "--data", bench, "--output_dir", a, "--max_per_class", "3",
                    "--dtype", "float32", "--no_plots"])
    assert proc.returncode == 0, proc.stderr
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    script = subprocess.run([sys.executable, "training/eval.py", "--model", str(model_dir), "--data", str(bench),
                             "--output_dir", str(b), "--max_per_class", "3", "--dtype", "float32", "--no_plots"],
                            capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert script.returncode == 0, script.stderr
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    assert ra == rb and ra["stylegan"]["n_real"] == 3
    assert (a / "scores.csv").read_text() == (b / "scores.csv").read_text()
    assert {"results.md", "scores.csv", "eval_info.json"} <= set(os.listdir(a))
    assert cli.main(["eval", "--model", str(model_dir), "--data", str(tmp_path / "nope"), "--output_dir",
                     str(tmp_path / "c")]) == cli.EXIT_USAGE
    assert cli.main(["eval", "--model", str(tmp_path / "no-model"), "--data", str(bench), "--output_dir",
                     str(tmp_path / "c")]) == cli.EXIT_MODEL


def test_subcommands_are_pluggable():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"detect", "eval", "spectrum"} <= set(sub.choices)

    def add_hello(subparsers):
        p = subparsers.add_parser("hello")
        p.add_argument("--name", default="x")
        p.set_defaults(func=lambda args: 7 if args.name == "y" else 0)

    cli.SUBCOMMANDS.append(add_hello)
    try:
        assert cli.main(["hello", "--name", "y"]) == 7
    finally:
        cli.SUBCOMMANDS.remove(add_hello)
    eval_args = cli.build_parser().parse_args(["eval", "--model", "m", "--data", "r", "--output_dir", "o"])
    config = cli.eval_config_from_args(eval_args)
    assert config.max_per_class is None and config.dtype == "auto" and config.jpeg_qualities == [90, 80, 70, 60, 50, 40, 30]
