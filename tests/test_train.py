"""Training end to end, through the real launchers (python, torchrun, accelerate launch) on the tiny config:
the loss goes down on a separable toy set, bad files are skipped and counted, two processes train on disjoint
shards, a run killed with SIGKILL and resumed ends bit-identical to an uninterrupted one, and the final folder
loads with the Auto classes and the pipeline. Plus the start-time checks of settings and data."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from hyperdet_hf.toy_data import make_toy_dataset
from hyperdet_hf.training import (
    TrainingConfig,
    Trainer,
    find_latest_checkpoint,
    list_checkpoints,
    parse_args,
)

from .test_data import BAD_FILES, ODD_FILES, write_odd_files

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY = ROOT / "training" / "configs" / "hyperdet_tiny_cpu.yaml"
PAPER = ROOT / "training" / "configs" / "hyperdet_vitl14_progan.yaml"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
       "PYTHONUNBUFFERED": "1"}
TIMEOUT = 240


def _cmd(launcher: str, *args) -> list:
    script = [str(ROOT / "training" / "train.py"), "--config", str(TINY), *map(str, args)]
    if launcher == "python":
        return [sys.executable, *script]
    if launcher == "torchrun":
        return [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(_free_port()), *script]
    if launcher == "accelerate":
        return [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()), *script]
    raise ValueError(launcher)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_train(launcher: str, *args, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(_cmd(launcher, *args), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
    if check and proc.returncode != 0:
        pytest.fail(f"{launcher} run failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("train-data")
    train = make_toy_dataset(base / "train", n_per_class=32, size=40, size_jitter=6, seed=0)
    val = make_toy_dataset(base / "val", n_per_class=16, size=40, size_jitter=6, seed=1)
    return train, val


def _keys_of(folder: Path) -> set:
    return {str(p.relative_to(folder)) for p in folder.rglob("*.png")}


def _metrics(out: Path) -> list:
    return [json.loads(line) for line in (out / "logs" / "metrics.jsonl").read_text().splitlines()]


# -- one process: learns, skips bad files, logs, writes a loadable final folder ------------------------------------
def test_one_process_learns_skips_bad_files_and_writes_a_hub_ready_folder(data, tmp_path):
    train, val = data
    dirty = tmp_path / "dirty"
    shutil.copytree(train, dirty)
    write_odd_files(dirty / "car" / "1_fake")
    out = tmp_path / "run"
    proc = run_train("python", "--train_data", dirty, "--val_data", val, "--output_dir", out, "--num_epochs", 8,
                     "--per_device_batch_size", 8, "--max_pixels", 3000, "--record_examples", "--save_steps", 0,
                     "--num_workers", 1, "--logging_steps", 5)
    results = json.loads((out / "train_results.json").read_text())
    batches = -(-(64 + len(BAD_FILES) + len(ODD_FILES)) // 8)
    assert results["global_step"] == 8 * batches and results["epochs_completed"] == 8

    # the loss goes down and the validation set is separated
    losses = [m["train/loss"] for m in _metrics(out)]
    assert len(losses) == 16 and np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.1, losses  # from ~0.7 (chance)
    assert results["val_results"]["acc"] >= 0.9 and results["val_results"]["ap"] >= 0.95, results["val_results"]
    assert len(results["val_history"]) == 8  # one validation per epoch

    # bad files: skipped, counted by reason (each met at least once per epoch), named in the log and a file
    skipped = results["skipped_files"]
    for reason in BAD_FILES.values():
        assert skipped[reason] >= 8, skipped
    assert skipped["missing"] == 0 and skipped["no-label"] == 0
    listed = (out / "skipped_files.tsv").read_text()
    assert all(name in listed for name in BAD_FILES)
    log = (out / "logs" / "train.log").read_text()
    assert "skipped unreadable training file" in log and "skipped files in total: " in log
    assert f"too-large={skipped['too-large']}" in proc.stderr  # the end-of-run summary
    # odd but decodable files were trained on
    seen = (out / "logs" / "examples" / "epoch0-rank0.txt").read_text()
    assert all(f"car/1_fake/{name}" in seen for name in ODD_FILES)

    # TensorBoard has the loss, each view's loss, lr, throughput and validation
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((out / "logs").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    wanted = {"train/loss", "train/lr", "train/images_per_s", "val/acc", "val/ap", "data/skipped_files"}
    wanted |= {f"train/loss_{v}" for v in ("srm1", "srm2", "srm3", "srm4", "srm5", "original")}
    assert wanted <= tags, wanted - tags

    # final/: safetensors, auto_map, code, processor, model card; loads with Auto classes and the pipeline
    final = out / "final"
    files = {p.name for p in final.iterdir()}
    assert {"model.safetensors", "config.json", "modeling_hyperdet.py", "preprocessor_config.json", "README.md"} <= files
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    assert "AutoModelForImageClassification" in json.loads((final / "config.json").read_text())["auto_map"]
    card = (final / "README.md").read_text()
    assert "random" in card and f"{results['val_results']['acc']:.4f}" in card
    # only the hypernetwork, its embeddings and the head moved; the backbone is the seeded initial one
    from hyperdet_hf.training import build_model

    initial = build_model(parse_args(["--config", str(TINY), "--train_data", "x", "--output_dir", "y"]))
    trained = load_file(final / "model.safetensors")
    for name, param in initial.named_parameters():
        if param.requires_grad:
            assert not torch.equal(trained[name], param.detach()), name
        else:
            assert torch.equal(trained[name], param.detach()), name
    from transformers import AutoModelForImageClassification, pipeline

    model = AutoModelForImageClassification.from_pretrained(final, trust_remote_code=True)
    assert model.config.id2label == {0: "real", 1: "fake"}
    detector = pipeline("image-classification", model=str(final), trust_remote_code=True)
    paths = sorted(val.rglob("*.png"))
    preds = detector([Image.open(p) for p in paths])
    correct = sum((top[0]["label"] == "fake") == ("1_fake" in str(p)) for top, p in zip(preds, paths))
    # fp32 here, bf16 autocast in training: the same decisions up to a borderline image
    assert abs(correct / len(paths) - results["val_results"]["acc"]) <= 1 / len(paths) + 1e-9


# -- two processes: disjoint shards that together cover every example once per epoch ---------------------------------
def test_torchrun_two_processes_train_on_disjoint_shards(data, tmp_path):
    train, val = data
    odd_val = tmp_path / "val"
    shutil.copytree(val, odd_val)  # 33 images: the processes hold 17 and 16, in 3 and 2 batches
    shutil.copy(next(val.rglob("*.png")), odd_val / "car" / "0_real" / "extra.png")
    out = tmp_path / "torchrun"
    run_train("torchrun", "--train_data", train, "--val_data", odd_val, "--output_dir", out, "--num_epochs", 2,
              "--per_device_batch_size", 8, "--record_examples", "--save_steps", 2, "--num_workers", 1)
    everything = _keys_of(train)
    assert len(everything) == 64
    for epoch in range(2):
        parts = [(out / "logs" / "examples" / f"epoch{epoch}-rank{r}.txt").read_text().split() for r in range(2)]
        assert len(parts[0]) == len(parts[1]) == 32
        assert not set(parts[0]) & set(parts[1])
        assert sorted(parts[0] + parts[1]) == sorted(everything)  # every example exactly once
    results = json.loads((out / "train_results.json").read_text())
    assert results["images_seen"] == 128 and results["global_step"] == 8
    assert results["val_results"]["n_real"] + results["val_results"]["n_fake"] == 33  # gathered over processes
    ckpt = find_latest_checkpoint(out)
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= {p.name for p in ckpt.iterdir()}  # both processes' RNG
    from hyperdet_hf import HyperDetForImageClassification

    model = HyperDetForImageClassification.from_pretrained(out / "final")
    assert model.config.vision_config.image_size == 32


def test_accelerate_launch_two_processes_on_a_streamed_dataset(tmp_path):
    """The Hub path: a parquet dataset written by `datasets`, read with streaming=True, its two shards dealt to two
    processes; validation on a `save_to_disk` dataset. Labels are a ClassLabel whose class 0 is *fake*."""
    from .test_data import _hub_style_dataset

    ds, labels = _hub_style_dataset(n=32, seed=4)
    (tmp_path / "hub" / "data").mkdir(parents=True)
    for i in range(2):
        ds.shard(2, i, contiguous=True).to_parquet(str(tmp_path / "hub" / "data" / f"train-{i:05d}-of-00002.parquet"))
    ds.save_to_disk(str(tmp_path / "val"))
    out = tmp_path / "run"
    run_train("accelerate", "--train_data", tmp_path / "hub", "--val_data", tmp_path / "val", "--output_dir", out,
              "--image_column", "img", "--label_column", "kind", "--max_steps", 2, "--per_device_batch_size", 8,
              "--shuffle_buffer", 4, "--record_examples", "--save_steps", 0, "--num_workers", 1)
    parts = [(out / "logs" / "examples" / f"epoch0-rank{r}.txt").read_text().split() for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 16 and not set(parts[0]) & set(parts[1])
    assert {k.split("-")[0] for k in parts[0]} != {k.split("-")[0] for k in parts[1]}  # one parquet shard each
    results = json.loads((out / "train_results.json").read_text())
    assert results["global_step"] == 2 and results["images_seen"] == 32
    val = results["val_results"]
    assert (val["n_real"], val["n_fake"]) == (labels.count(0), labels.count(1))
    assert (out / "final" / "model.safetensors").is_file()


# -- resume after SIGKILL: the same weights as an uninterrupted run --------------------------------------------------------
def test_resume_after_sigkill_is_bit_identical(data, tmp_path):
    train, _ = data
    common = ["--train_data", train, "--max_steps", 40, "--save_steps", 5, "--save_total_limit", 2,
              "--per_device_batch_size", 8, "--report_to", "none"]
    straight = tmp_path / "straight"
    run_train("python", *common, "--output_dir", straight, "--num_workers", 0)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd("python", *common, "--output_dir", killed, "--num_workers", 2), cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + TIMEOUT
    while not (killed / "checkpoints" / "checkpoint-10").is_dir():
        assert proc.poll() is None and time.time() < deadline, "the run ended before its 2nd checkpoint"
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # the trainer and its DataLoader workers, no chance to clean up
    proc.wait()
    assert not (killed / "final").exists(), "the kill came too late to test anything"
    steps = [s for s, _ in list_checkpoints(killed)]
    assert steps and steps[-1] >= 10 and len(steps) <= 2 and steps[-1] < 40

    resumed = run_train("python", *common, "--output_dir", killed, "--num_workers", 2, "--resume_from_checkpoint", "latest")
    assert f"resumed from {killed / 'checkpoints' / f'checkpoint-{steps[-1]}'}" in resumed.stderr
    a, b = load_file(straight / "final" / "model.safetensors"), load_file(killed / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key  # bit-identical, frozen and trained weights alike
    ra, rb = (json.loads((d / "train_results.json").read_text()) for d in (straight, killed))
    assert ra["images_seen"] == rb["images_seen"] == 40 * 8 and ra["global_step"] == rb["global_step"] == 40
    # the resumed session continued (it ran only the remaining steps), it did not start over
    assert rb["start_step"] == steps[-1] and rb["resumed_from"].endswith(f"checkpoint-{steps[-1]}")


def test_latest_ignores_half_written_checkpoints(tmp_path):
    root = tmp_path / "checkpoints"
    (root / "checkpoint-5").mkdir(parents=True)
    (root / "checkpoint-5" / "training_state.json").write_text("{}")
    (root / ".tmp-checkpoint-10").mkdir()  # a save that a kill interrupted
    (root / ".tmp-checkpoint-10" / "training_state.json").write_text("{}")
    (root / "checkpoint-15").mkdir()  # no state file: incomplete
    assert find_latest_checkpoint(tmp_path) == root / "checkpoint-5"
    config = parse_args(["--config", str(TINY), "--train_data", "x", "--output_dir", str(tmp_path),
                         "--resume_from_checkpoint", str(root / "checkpoint-15")])
    from hyperdet_hf.training import resolve_resume

    with pytest.raises(ValueError, match="is not a checkpoint folder"):
        resolve_resume(config)


# -- settings and data are checked before anything runs -----------------------------------------------------------------
def _yaml(tmp_path, **values) -> Path:
    path = tmp_path / "config.yaml"
    base = yaml.safe_load(TINY.read_text())
    base.update(train_data=str(tmp_path), output_dir=str(tmp_path / "out"))
    base.update(values)
    path.write_text(yaml.safe_dump(base))
    return path


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--max_steps", "-5"], "command line (--max_steps): max_steps: must be >= 1"),
        (["--save_steps", "-1"], "save_steps: must be >= 0"),
        (["--learning_rate", "0"], "learning_rate: must be > 0"),
        (["--per_device_batch_size", "abc"], "per_device_batch_size: expects an integer"),
        (["--mixed_precision", "fp8"], "mixed_precision: unknown 'fp8'"),
        (["--lr_scheduler", "sawtooth"], "lr_scheduler: unknown 'sawtooth'"),
        (["--augment.blur_prob", "2"], "augment.blur_prob: must be a probability"),
        (["--model.lora_rank", "0"], "HyperDetConfig.lora_rank"),
        (["--model.tuned_layers", "[7]"], "HyperDetConfig.tuned_layers"),
        (["--push_to_hub"], "hub_model_id: required with push_to_hub"),
        (["--backbone", "openai/clip-vit-large-patch14"], "model.vision_config is only for backbone 'random'"),
        (["--num_epoch", "3"], "unknown key 'num_epoch' (did you mean 'num_epochs'?)"),
        (["--foo.bar", "1"], "only model, augment, label_map take dotted keys"),
        (["stray"], "unexpected argument 'stray'"),
    ],
)
def test_bad_settings_fail_naming_the_field(tmp_path, argv, message):
    with pytest.raises(ValueError) as err:
        parse_args(["--config", str(_yaml(tmp_path)), *argv])
    assert message in str(err.value)


def test_bad_yaml_names_the_file(tmp_path):
    path = _yaml(tmp_path, epochs=3)
    with pytest.raises(ValueError, match=f"{path}: unknown key 'epochs'"):
        parse_args(["--config", str(path)])
    path.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ValueError, match=f"{path}: expected a mapping"):
        parse_args(["--config", str(path)])
    with pytest.raises(ValueError, match="--config: no such file"):
        parse_args(["--config", str(tmp_path / "missing.yaml")])
    random_without_tower = _yaml(tmp_path, model={"lora_rank": 4})
    with pytest.raises(ValueError, match="backbone 'random' needs model.vision_config"):
        parse_args(["--config", str(random_without_tower)])


def test_yaml_and_overrides_merge(tmp_path):
    config = parse_args(["--config", str(TINY), "--train_data", "d", "--output_dir", "o", "--model.lora_rank", "8",
                         "--augment.jpeg_quality", "[50, 90]", "--learning_rate=3e-4", "--max_steps", "7"])
    assert config.model["lora_rank"] == 8 and config.model["vision_config"]["image_size"] == 32  # merged, not replaced
    assert config.augment_config().jpeg_quality == (50, 90) and config.augment_config().blur_prob == 0.1
    assert config.learning_rate == 3e-4 and config.max_steps == 7
    paper = parse_args(["--config", str(PAPER), "--model.some_new_variant_key", "baseline"])
    assert paper.model["some_new_variant_key"] == "baseline"  # unknown model keys pass through
    assert (paper.backbone, paper.model["lora_rank"], paper.model["loss_alpha"], paper.learning_rate,
            paper.num_epochs) == ("openai/clip-vit-large-patch14", 16, 0.1, 1e-4, 5)
    assert paper.model["tuned_layers"] == list(range(16, 24))
    aug = paper.augment_config()
    assert (aug.blur_prob, aug.jpeg_prob, aug.blur_sigma, aug.jpeg_quality) == (0.1, 0.1, (0.0, 3.0), (30, 100))


def test_empty_data_fails_at_start_with_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    proc = run_train("python", "--train_data", tmp_path / "empty", "--output_dir", out, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: train_data: {tmp_path / 'empty'} holds no image files (looked for .png, .jpg, .jpeg, .webp, ... at any depth)")
    assert not (out / "final").exists() and not (out / "checkpoints").exists()


@pytest.fixture
def fresh_accelerate():
    from accelerate.state import AcceleratorState, GradientState

    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def test_gradient_accumulation_matches_a_bigger_batch(data, tmp_path, fresh_accelerate):
    """Two micro-batches of 4 with accumulation 2 take the same steps as batches of 8 (fp32: only rounding differs)."""
    train, _ = data
    weights = []
    for batch, accum in ((8, 1), (4, 2)):
        out = tmp_path / f"b{batch}"
        config = parse_args(["--config", str(TINY), "--train_data", str(train), "--output_dir", str(out),
                             "--per_device_batch_size", str(batch), "--gradient_accumulation_steps", str(accum),
                             "--max_steps", "3", "--mixed_precision", "no", "--report_to", "none", "--save_steps", "0",
                             "--augment.blur_prob", "0", "--augment.jpeg_prob", "0",
                             "--adam_epsilon", "1.0"])  # large eps: steps scale with the gradient, so a wrong scale shows
        summary = Trainer(config).train()
        assert summary["global_step"] == 3 and summary["images_seen"] == 24
        weights.append(load_file(out / "final" / "model.safetensors"))
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    changed = 0
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=1e-4, atol=1e-5)
        changed += int("hyper_lora" in key or "classifier" in key)
    assert changed > 0


def test_frozen_weights_cast_to_bf16_train_bit_identically_and_save_float32(data, tmp_path, fresh_accelerate):
    """cast_frozen_weights (default) stores the frozen Linear/Conv weights in bf16 during a bf16 run: the same
    steps, bit for bit, as autocast re-casting float32 weights, and final/ still holds the float32 backbone."""
    from accelerate.state import AcceleratorState, GradientState

    from hyperdet_hf.training import build_model

    train, _ = data
    weights, dtypes = [], []
    for cast in (True, False):
        out = tmp_path / f"cast-{cast}"
        config = parse_args(["--config", str(TINY), "--train_data", str(train), "--output_dir", str(out),
                             "--max_steps", "3", "--per_device_batch_size", "8", "--mixed_precision", "bf16",
                             "--cast_frozen_weights", str(cast).lower(), "--report_to", "none", "--save_steps", "0"])
        trainer = Trainer(config).setup()
        dtypes.append({p.dtype for p in trainer.model.parameters() if not p.requires_grad})
        assert {p.dtype for p in trainer.model.parameters() if p.requires_grad} == {torch.float32}
        trainer.train()
        weights.append(load_file(out / "final" / "model.safetensors"))
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    assert torch.bfloat16 in dtypes[0] and dtypes[1] == {torch.float32}
    initial = dict(build_model(config).named_parameters())
    assert weights[0].keys() == weights[1].keys() == initial.keys()
    for key in weights[0]:
        assert weights[0][key].dtype == torch.float32, key
        assert torch.equal(weights[0][key], weights[1][key]), key
        if not initial[key].requires_grad:
            assert torch.equal(weights[0][key], initial[key].detach()), key
    assert any(not torch.equal(weights[0][k], initial[k].detach()) for k in weights[0] if "hyper_lora" in k)


def test_start_checks_that_need_the_world(data, tmp_path, fresh_accelerate, monkeypatch):
    train, _ = data
    base = ["--config", str(TINY), "--train_data", str(train), "--output_dir", str(tmp_path / "out"), "--report_to", "none"]
    ckpt = tmp_path / "out" / "checkpoints" / "checkpoint-3"
    ckpt.mkdir(parents=True)
    (ckpt / "training_state.json").write_text("{}")
    with pytest.raises(ValueError, match="holds checkpoints of an earlier run"):
        Trainer(parse_args(base)).setup()
    one_class = tmp_path / "one"
    make_toy_dataset(one_class, n_per_class=2, size=8)
    shutil.rmtree(one_class / "car" / "1_fake")
    shutil.rmtree(one_class / "cat" / "1_fake")
    with pytest.raises(ValueError, match=f"train_data: {one_class} has no fake image"):
        Trainer(parse_args(base + ["--train_data", str(one_class), "--overwrite_output_dir"])).setup()
    with pytest.raises(ValueError, match="val_data: no such folder"):
        Trainer(parse_args(base + ["--val_data", str(tmp_path / "nope"), "--overwrite_output_dir"])).setup()
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="push_to_hub: the Hub is switched off"):
        Trainer(parse_args(base + ["--push_to_hub", "--hub_model_id", "me/det", "--overwrite_output_dir"])).setup()
    assert isinstance(parse_args(base), TrainingConfig)
