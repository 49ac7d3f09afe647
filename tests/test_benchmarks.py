"""The benchmarks run in a reduced size, so they cannot rot. No timing is asserted, only that each
prints its table and a parsable ratios line."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def run(script, *args):
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=BENCH, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("RATIOS"), proc.stdout
    return proc.stdout


def ratios(out):
    return {k: float(v) for k, v in re.findall(r"([\w/.\-]+)=([0-9.]+)", out.strip().splitlines()[-1])}


def test_bench_inference_tiny():
    out = run("bench_inference.py", "--size", "tiny", "--batch", "2", "--repeats", "1", "--breakdown")
    r = ratios(out)
    assert {"fp32", "bf16", "speed-up", "floor"} <= set(r)
    assert "| hyperdet float32" in out and "| plain CLIP x6 views bfloat16" in out
    assert "building the views bfloat16" in out and "adapted backbone on given views float32" in out
    diff = float(re.search(r"P\(fake\) bf16\| on random inputs: ([0-9.]+)", out).group(1))
    assert diff < 0.05  # bf16 weights move P(fake) by little


def test_bench_train_step_tiny():
    out = run("bench_train_step.py", "--size", "tiny", "--batch", "2", "--repeats", "1")
    assert "hyperdet/naive" in out and "| naive" in out


def test_bench_cascade_tiny():
    out = run("bench_cascade.py", "--max_images", "8", "--batch", "8", "--repeats", "1", "--dtype", "float32", "--threshold", "1e9")
    r = ratios(out)
    # with an unreachable threshold every image exits after views 1 and 6
    assert r["views"] == pytest.approx(2 / 6, abs=0.01)
    assert re.search(r"\| cascade\s+\| 2\.00", out)


def test_bench_data_small():
    out = run("bench_data.py", "--size", "48", "--crop", "32", "--images", "16", "--batch", "4")
    r = ratios(out)
    assert r["pipeline/decode"] > 0
    assert "| EpochData (datasets stream + DataLoader)" in out


def test_bench_malloc_tiny():
    # each setting runs in its own process, which asserts the setting it ran with
    out = run("bench_malloc.py", "--size", "tiny", "--batch", "2", "--repeats", "1")
    assert "keep_freed_memory/glibc" in out and "| glibc default" in out
