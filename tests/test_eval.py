"""Evaluation: the metric module against scikit-learn, benchmark layouts, sampling, and results files."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score

from hyperdet_hf.evaluation import (
    EvalConfig,
    METRIC_DIR,
    discover_benchmark,
    load_detection_metric,
    read_label_csv,
    read_scores_csv,
    run_evaluation,
    sample_per_class,
    tile_to,
)
from hyperdet_hf.layouts import Example

from .eval_helpers import direct_p_fake, make_benchmark, save_tiny_model, write_images


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny-hyperdet")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return make_benchmark(tmp_path_factory.mktemp("bench") / "univfd_like")


@pytest.fixture(scope="module")
def evaluated(model_dir, bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "out"
    run = run_evaluation(EvalConfig(model=str(model_dir), data=[str(bench)], output_dir=str(out), dtype="float32",
                                    batch_size=8, num_workers=0, progress=False))
    return out, run


# -- the metric module ------------------------------------------------------------------------------------
def _brute_oracle(y, s):
    best = (np.mean(y == 0), np.inf)
    for t in sorted(set(s), reverse=True):
        acc = np.mean((s >= t) == (y == 1))
        if acc > best[0]:
            best = (acc, t)
    return best


@pytest.mark.parametrize("seed,n,decimals", [(0, 200, 2), (1, 57, 1), (2, 1000, 6), (3, 12, 0)])
def test_metric_module_equals_sklearn(seed, n, decimals):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = np.round(np.clip(rng.normal(0.45 + 0.2 * y, 0.25), 0, 1), decimals)  # rounding makes ties
    m = load_detection_metric().compute(predictions=s.tolist(), references=y.tolist())
    assert m["acc"] == accuracy_score(y, s >= 0.5)
    assert m["real_acc"] == accuracy_score(y[y == 0], s[y == 0] >= 0.5)
    assert m["fake_acc"] == accuracy_score(y[y == 1], s[y == 1] >= 0.5)
    assert m["ap"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert m["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    acc_o, thr_o = _brute_oracle(y, s)
    assert m["acc_oracle"] == pytest.approx(acc_o, abs=1e-12)
    assert np.mean((s >= m["threshold_oracle"]) == (y == 1)) == pytest.approx(m["acc_oracle"], abs=1e-12)
    assert (m["n_real"], m["n_fake"]) == (int((y == 0).sum()), int((y == 1).sum()))


def test_metric_module_edge_cases():
    metric = load_detection_metric()
    assert type(metric).__module__.split(".")[-1] == "hyperdet_detection"  # the local module, no Hub
    assert (METRIC_DIR / "hyperdet_detection.py").is_file()
    perfect = metric.compute(predictions=[0.1, 0.2, 0.8, 0.9], references=[0, 0, 1, 1])
    assert perfect["ap"] == 1.0 and perfect["auc"] == 1.0 and perfect["acc_oracle"] == 1.0
    tied = metric.compute(predictions=[0.5] * 4, references=[0, 1, 0, 1])
    assert tied["ap"] == average_precision_score([0, 1, 0, 1], [0.5] * 4) and tied["auc"] == 0.5
    only_fake = metric.compute(predictions=[0.2, 0.7], references=[1, 1])
    assert only_fake["ap"] is None and only_fake["real_acc"] is None and only_fake["fake_acc"] == 0.5


# -- layouts ----------------------------------------------------------------------------------------------
def test_layouts_map_every_generator(bench):
    found = discover_benchmark([bench])
    assert set(found) == {"progan", "stylegan", "ldm_200", "glide_100_27", "guided", "midjourney"}  # no laion/imagenet

    def files(gen, label):
        return sorted(Path(e.path).relative_to(bench).as_posix() for e in found[gen] if e.label == label)

    # class subfolders both count, and the corrupt file is listed (it is skipped at decode time, not here)
    assert len(files("progan", 0)) == 8 and len(files("progan", 1)) == 9
    assert {f.split("/")[1] for f in files("progan", 0)} == {"cat", "dog"}
    # UnivFD diffusion sets take their reals from the separate folder of the table
    laion = sorted(f"laion/0_real/img{i:03d}.png" for i in range(5))
    assert files("ldm_200", 0) == laion and files("glide_100_27", 0) == laion
    assert files("guided", 0) == sorted(f"imagenet/0_real/img{i:03d}.png" for i in range(4))
    assert files("ldm_200", 1) == sorted(f"ldm_200/1_fake/img{i:03d}.png" for i in range(5))
    # GenImage nature/ai, only the val split when train and val both exist
    assert len(files("midjourney", 0)) == 4 and all("/val/nature/" in f for f in files("midjourney", 0))
    assert all("/val/ai/" in f for f in files("midjourney", 1))
    assert all(e.generator == gen for gen, ex in found.items() for e in ex)


def test_layout_root_as_one_generator_custom_real_map_and_collisions(bench, tmp_path):
    rng = np.random.default_rng(5)
    single = tmp_path / "mygen"
    write_images(single / "0_real", 2, False, rng)
    write_images(single / "1_fake", 3, True, rng)
    assert {g: len(e) for g, e in discover_benchmark([single]).items()} == {"mygen": 5}

    other = tmp_path / "other"
    write_images(other / "sdxl" / "1_fake", 3, True, rng)
    write_images(other / "coco" / "0_real", 2, False, rng)
    write_images(other / "stylegan" / "0_real", 1, False, rng)
    write_images(other / "stylegan" / "1_fake", 1, True, rng)
    found = discover_benchmark([bench, other], real_map={"sdxl": "coco"})
    assert sorted(Path(e.path).parent.parent.name for e in found["sdxl"]) == ["coco", "coco", "sdxl", "sdxl", "sdxl"]
    assert "coco" not in found
    assert "stylegan" in found and "other/stylegan" in found  # same name in two roots: prefixed, not merged
    assert len(found["other/stylegan"]) == 2 and len(found["stylegan"]) == 12
    with pytest.raises(ValueError, match="no labelled images"):
        discover_benchmark([tmp_path / "other" / "coco" / "0_real"])


def test_fake2m_csv_layout(tmp_path):
    rng = np.random.default_rng(6)
    root = tmp_path / "FakeImageDataset"
    write_images(root / "ImageData" / "val" / "SDv21-CC15K" / "SDv2-dpmsolver-25-10K", 3, True, rng, prefix="f")
    write_images(root / "ImageData" / "val" / "SDv21-CC15K" / "cc3m", 2, False, rng, prefix="r")
    write_images(root / "ImageData" / "val" / "Midjourneyv5-5K", 2, True, rng, prefix="m")
    meta = root / "MetaData" / "val"
    meta.mkdir(parents=True)
    with open(meta / "SDv21-CC15K.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["File_Name", "Label"])
        w.writerows([[f"SDv2-dpmsolver-25-10K/f{i:03d}.png", "fake"] for i in range(3)])
        w.writerows([[f"cc3m/r{i:03d}.png", "real"] for i in range(2)])
        w.writerow(["cc3m/unlabelled.png", "?"])
    (meta / "Midjourneyv5-5K.csv").write_text("m000.png,1\nm001.png,1\n")  # no header row
    found = discover_benchmark([root])
    assert set(found) == {"SDv21-CC15K", "Midjourneyv5-5K"}
    sd = found["SDv21-CC15K"]
    assert sorted(e.label for e in sd) == [0, 0, 1, 1, 1] and all(Path(e.path).is_file() for e in sd)
    assert [Path(e.path).name for e in found["Midjourneyv5-5K"]] == ["m000.png", "m001.png"]

    # a free CSV with a generator column and absolute/relative paths
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("path,is_fake,source\n"
                        f"{sd[0].path},0,a\nSDv21-CC15K/SDv2-dpmsolver-25-10K/f000.png,true,b\n")
    examples, bad = read_label_csv(csv_path, [root / "ImageData" / "val"])
    assert bad == 0 and [(e.label, e.generator) for e in examples] == [(0, "a"), (1, "b")]
    assert all(Path(e.path).is_file() for e in examples)


# -- sampling ---------------------------------------------------------------------------------------------
def test_max_per_class_sampling_is_deterministic():
    examples = [Example(f"/d/{label}/{i:04d}.png", label, "g") for label in (0, 1) for i in range(50 + 7 * label)]
    a = sample_per_class(examples, 10, seed=0)
    shuffled = examples[:]
    random.Random(3).shuffle(shuffled)
    b = sample_per_class(shuffled, 10, seed=0)
    assert a == b  # independent of the input order
    assert [sum(e.label == k for e in a) for k in (0, 1)] == [10, 10]
    assert sample_per_class(examples, 10, seed=1) != a
    assert sample_per_class(examples, 1000, seed=0) == sorted(examples, key=lambda e: (e.label, e.path))
    # UnivFD's draw: random.Random(seed).sample over the sorted list
    reals = sorted(e.path for e in examples if e.label == 0)
    assert [e.path for e in a if e.label == 0] == [reals[i] for i in sorted(random.Random(0).sample(range(50), 10))]


def test_max_per_class_end_to_end(model_dir, bench, tmp_path):
    runs = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        run_evaluation(EvalConfig(model=str(model_dir), data=[str(bench)], output_dir=str(out), max_per_class=3,
                                  seed=7, batch_size=16, num_workers=0, progress=False, plots=False))
        runs.append(out)
    first, second = (read_scores_csv(r / "scores.csv") for r in runs)
    assert [r["path"] for r in first] == [r["path"] for r in second]
    res = json.loads((runs[0] / "results.json").read_text())
    assert res["stylegan"]["n_real"] == 3 and res["stylegan"]["n_fake"] == 3
    assert res["glide_100_27"]["n_fake"] == 3 and res["glide_100_27"]["n_real"] == 3


# -- end to end -------------------------------------------------------------------------------------------
def test_results_json_equals_sklearn_on_scores_csv(evaluated):
    out, run = evaluated
    results = json.loads((out / "results.json").read_text())
    rows = read_scores_csv(out / "scores.csv")
    assert results == json.loads(json.dumps(run["results"]))
    gens = [g for g in results if g != "mean"]
    assert set(gens) == {"progan", "stylegan", "ldm_200", "glide_100_27", "guided", "midjourney"}
    for gen in gens:
        y = np.array([r["label"] for r in rows if r["generator"] == gen])
        s = np.array([r["score"] for r in rows if r["generator"] == gen])
        r = results[gen]
        assert {"acc", "real_acc", "fake_acc", "ap", "n_real", "n_fake"} <= set(r)
        assert (r["n_real"], r["n_fake"]) == (int((y == 0).sum()), int((y == 1).sum()))
        assert r["acc"] == accuracy_score(y, s >= 0.5)
        assert r["real_acc"] == accuracy_score(y[y == 0], s[y == 0] >= 0.5)
        assert r["fake_acc"] == accuracy_score(y[y == 1], s[y == 1] >= 0.5)
        assert r["ap"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
        assert r["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert len({round(r["score"], 6) for r in rows}) > 10  # the scores are not all the same
    mean = results["mean"]
    for key in ("acc", "real_acc", "fake_acc", "ap", "auc", "acc_oracle"):
        assert mean[key] == pytest.approx(np.mean([results[g][key] for g in gens]), abs=1e-12)
    assert mean["n_real"] == sum(results[g]["n_real"] for g in gens) and mean["n_generators"] == 6
    # the corrupt file: skipped, counted, listed with its reason; never scored
    assert results["progan"]["n_skipped"] == 1 and results["progan"]["n_fake"] == 8 and mean["n_skipped"] == 1
    skipped = list(csv.DictReader(open(out / "skipped.csv")))
    assert [(Path(s["path"]).name, s["reason"]) for s in skipped] == [("zz_corrupt.png", "not-an-image")]


def test_scores_are_p_fake_of_the_center_crop(evaluated, model_dir):
    out, _ = evaluated
    rows = [r for r in read_scores_csv(out / "scores.csv") if r["generator"] == "stylegan"]
    direct = direct_p_fake(model_dir, [r["path"] for r in rows])
    np.testing.assert_allclose([r["score"] for r in rows], direct, rtol=0, atol=2e-6)


def test_results_md_and_info(evaluated):
    out, run = evaluated
    md = (out / "results.md").read_text()
    results = run["results"]
    header = next(line for line in md.splitlines() if line.startswith("| Method |"))
    # the paper's column order: GANs, then the diffusion sets, then others; the mean last
    assert header.split("|")[2:-1] == [" ProGAN ", " StyleGAN ", " Guided ", " LDM 200s ", " GLIDE 100-27 ", " midjourney ", " avg. Acc "]
    assert f"| {100 * results['mean']['acc']:.2f} |" in md and f"| {100 * results['mean']['ap']:.2f} |" in md
    assert "Table 2: average precision" in md
    info = json.loads((out / "eval_info.json").read_text())
    assert info["n_scored"] == sum(results[g]["n_real"] + results[g]["n_fake"] for g in results if g != "mean")
    assert info["n_skipped"] == 1 and info["dtype"] == "float32" and info["crop_size"] == 32
    assert info["images_per_second"] > 0
    assert (out / "per_generator.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_small_images_pad_or_tile(model_dir, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(9)
    small = Image.fromarray(rng.integers(0, 256, (10, 12, 3)).astype(np.uint8))
    tiled = np.asarray(tile_to(small, 32))
    assert tiled.shape == (32, 32, 3)
    np.testing.assert_array_equal(tiled[10:20, 12:24], np.asarray(small))  # periodic copies
    root = tmp_path / "tiny_gen"
    write_images(root / "0_real", 3, False, rng, size=(10, 12))
    write_images(root / "1_fake", 3, True, rng, size=(10, 12))
    scores = {}
    for mode in ("pad", "tile"):
        out = tmp_path / mode
        run_evaluation(EvalConfig(model=str(model_dir), data=[str(root)], output_dir=str(out), pad_mode=mode,
                                  dtype="float32", num_workers=0, progress=False, plots=False))
        scores[mode] = [r["score"] for r in read_scores_csv(out / "scores.csv")]
    assert len(scores["pad"]) == 6 and len(scores["tile"]) == 6
    assert not np.allclose(scores["pad"], scores["tile"])
