"""Training HyperDet through Accelerate: the run's settings, the loop, checkpoints and the final model folder.

Settings come from a YAML file with command-line overrides (``TrainingConfig``; ``parse_args``): top-level
keys are the ``--flags`` of ``training/train.py``; ``model:`` holds ``HyperDetConfig`` overrides (passed
through unchecked here, the config class validates them), ``augment:`` the augmentation. Nested keys are
overridden as ``--model.lora_rank 8``. Everything is validated before any data or weights are touched;
a bad value fails with a ``ValueError`` naming the field and the file it came from.

The loop (``train``): AdamW over the trainable parameters only (hypernetwork, embeddings, head), mixed
precision by Accelerate (bf16 where the CPU or GPU has it), gradient accumulation, a tqdm bar on the main
process, TensorBoard scalars (loss, per-view losses, lr, throughput, skipped files), validation at the end of
every epoch, ``accelerator.end_training()``.

Checkpoints (``<output_dir>/checkpoints/checkpoint-<step>``) are Accelerate states (optimizer, scheduler,
RNG of every process, the data position) plus the trainable weights only: the frozen backbone is rebuilt
from ``--backbone`` and checked against a fingerprint, so a ViT-L checkpoint is megabytes, not 1.2 GB.
They are written into a hidden temporary folder and renamed into place, so a killed run never leaves a
half checkpoint that ``latest`` would pick. The data order and every augmentation are functions of
``(seed, epoch, position)``, so a resumed run continues bit for bit (same number of processes, workers
do not matter).

The end of a run writes ``<output_dir>/final``: weights (safetensors), config with ``auto_map``, modeling
code, the forensic processor and a model card; ``--push_to_hub`` uploads it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
import time
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import yaml

from .augment import AugmentConfig, EvalTransform, TrainTransform
from .data import SKIP_REASONS, DataOptions, EpochData, IndexedSource, open_source, skip_summary
from .image_io import DEFAULT_MAX_PIXELS

logger = logging.getLogger("hyperdet_hf.training")

RANDOM_BACKBONE = "random"
CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "training_state.json"
VIEW_NAMES = ("srm1", "srm2", "srm3", "srm4", "srm5", "original")
MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
REPORT_TO = ("tensorboard", "none")
# Settings that change what a run computes; a resume with different values is reported.
TRAJECTORY_KEYS = ("backbone", "model", "augment", "train_data", "seed", "per_device_batch_size",
                   "gradient_accumulation_steps", "learning_rate", "weight_decay", "lr_scheduler", "warmup_steps",
                   "max_grad_norm", "mixed_precision", "adam_beta1", "adam_beta2", "adam_epsilon")


def _f(default=dataclasses.MISSING, help: str = "", **kw):
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class TrainingConfig:
    """All settings of a training run (YAML keys and ``--flags`` share these names)."""

    # what to train
    backbone: str = _f("openai/clip-vit-large-patch14",
                       "Hub id or local folder of a CLIP checkpoint, or 'random' (weights drawn from the seed; "
                       "needs model.vision_config)")
    model: dict = _f({}, "HyperDetConfig overrides (lora_rank, tuned_layers, loss_alpha, fusion, vision_config, ...)")
    # data
    train_data: Optional[str] = _f(None, "training data: a local folder (0_real/1_fake or nature/ai at any depth), "
                                         "a save_to_disk folder, or a Hub dataset id (streamed)")
    val_data: Optional[str] = _f(None, "validation data, same kinds as train_data (validated at every epoch end)")
    train_split: str = _f("train", "split of a dataset source used for training")
    val_split: str = _f("validation", "split of a dataset source used for validation")
    image_column: str = _f("image", "image column of a dataset source")
    label_column: str = _f("label", "label column of a dataset source")
    label_map: Optional[dict] = _f(None, "dataset label value -> 0 (real) / 1 (fake), when the names are not obvious")
    max_pixels: int = _f(DEFAULT_MAX_PIXELS, "images with more pixels are refused (counted as too-large)")
    num_workers: int = _f(2, "DataLoader worker processes per training process")
    shuffle_buffer: int = _f(1000, "shuffle buffer of streamed datasets")
    augment: dict = _f({}, "augmentation: flip_prob, blur_prob, blur_sigma, jpeg_prob, jpeg_quality")
    # optimisation
    num_epochs: int = _f(5, "passes over the training data (ignored when max_steps is set)")
    max_steps: Optional[int] = _f(None, "optimizer steps to run (overrides num_epochs)")
    per_device_batch_size: int = _f(16, "images per batch and process")
    eval_batch_size: Optional[int] = _f(None, "images per validation batch (default: per_device_batch_size)")
    gradient_accumulation_steps: int = _f(1, "batches per optimizer step")
    learning_rate: float = _f(1e-4, "AdamW learning rate")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    adam_beta1: float = _f(0.9, "AdamW beta1")
    adam_beta2: float = _f(0.999, "AdamW beta2")
    adam_epsilon: float = _f(1e-8, "AdamW epsilon")
    lr_scheduler: str = _f("constant", "transformers scheduler name (constant, linear, cosine, ...)")
    warmup_steps: int = _f(0, "linear warmup steps")
    max_grad_norm: float = _f(0.0, "clip gradients to this norm (0: off)")
    mixed_precision: str = _f("auto", "auto (bf16 where the hardware has it), no, bf16, fp16")
    cast_frozen_weights: bool = _f(True, "under bf16/fp16 mixed precision, store the frozen backbone's Linear and "
                                         "Conv weights in that dtype: the numbers autocast computes are unchanged "
                                         "and those weights take half the memory; final/ is saved with the "
                                         "float32 weights")
    seed: int = _f(0, "seed of the weights, the data order and the augmentation")
    # output
    output_dir: Optional[str] = _f(None, "run folder: checkpoints/, logs/, final/")
    overwrite_output_dir: bool = _f(False, "start afresh even if output_dir holds checkpoints of an earlier run")
    save_steps: int = _f(500, "checkpoint every N optimizer steps (0: only the final model)")
    save_total_limit: Optional[int] = _f(2, "keep the newest N checkpoints (null: keep all)")
    resume_from_checkpoint: Optional[str] = _f(None, "a checkpoint folder, or 'latest' (starts afresh when there is none)")
    logging_steps: int = _f(10, "log every N optimizer steps")
    report_to: str = _f("tensorboard", "tensorboard or none")
    record_examples: bool = _f(False, "write the keys of the examples each process trained on, per epoch "
                                      "(logs/examples/epoch<E>-rank<R>.txt)")
    push_to_hub: bool = _f(False, "upload output_dir/final to the Hub at the end")
    hub_model_id: Optional[str] = _f(None, "repository id for push_to_hub (owner/name)")
    hub_private: bool = _f(False, "create the Hub repository as private")

    # -- construction ---------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict, origins: Optional[dict] = None) -> "TrainingConfig":
        """Coerce and validate ``values``; ``origins`` maps a key to where it came from (for messages)."""
        origins = origins or {}
        types = typing.get_type_hints(cls)
        known = {f.name for f in fields(cls)}
        unknown = [k for k in values if k not in known]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{origins.get(key, 'config')}: unknown key {key!r}{hint}; known keys: {', '.join(sorted(known))}")
        kwargs = {}
        for name, value in values.items():
            kwargs[name] = _coerce(value, types[name], f"{origins.get(name, 'config')}: {name}")
        config = cls(**kwargs)
        config.validate(origins)
        return config

    def validate(self, origins: Optional[dict] = None) -> None:
        origins = origins or {}

        def fail(name: str, why: str):
            raise ValueError(f"{origins.get(name, 'config')}: {name}: {why}")

        if not self.train_data:
            fail("train_data", "required (a local folder, a save_to_disk folder or a Hub dataset id)")
        if not self.output_dir:
            fail("output_dir", "required (the run folder)")
        if not self.backbone:
            fail("backbone", "required (a Hub id, a local CLIP folder, or 'random')")
        for name in ("per_device_batch_size", "gradient_accumulation_steps", "logging_steps", "num_epochs", "max_pixels"):
            if getattr(self, name) < 1:
                fail(name, f"must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            fail("max_steps", f"must be >= 1 (or null to train num_epochs epochs), got {self.max_steps}")
        if self.eval_batch_size is not None and self.eval_batch_size < 1:
            fail("eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")
        for name in ("save_steps", "warmup_steps", "num_workers", "shuffle_buffer", "seed"):
            if getattr(self, name) < 0:
                fail(name, f"must be >= 0, got {getattr(self, name)}")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            fail("save_total_limit", f"must be >= 1 (or null to keep all), got {self.save_total_limit}")
        if not self.learning_rate > 0:
            fail("learning_rate", f"must be > 0, got {self.learning_rate}")
        for name in ("weight_decay", "max_grad_norm", "adam_epsilon"):
            if getattr(self, name) < 0:
                fail(name, f"must be >= 0, got {getattr(self, name)}")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                fail(name, f"must lie in [0, 1), got {getattr(self, name)}")
        if self.mixed_precision not in MIXED_PRECISION:
            fail("mixed_precision", f"unknown {self.mixed_precision!r}; choose from {list(MIXED_PRECISION)}")
        if self.report_to not in REPORT_TO:
            fail("report_to", f"unknown {self.report_to!r}; choose from {list(REPORT_TO)}")
        from transformers import SchedulerType

        schedulers = [s.value for s in SchedulerType]
        if self.lr_scheduler not in schedulers:
            fail("lr_scheduler", f"unknown {self.lr_scheduler!r}; choose from {schedulers}")
        if self.push_to_hub and not self.hub_model_id:
            fail("hub_model_id", "required with push_to_hub (owner/name)")
        if self.backbone == RANDOM_BACKBONE:
            if not isinstance(self.model.get("vision_config"), dict):
                fail("model", "backbone 'random' needs model.vision_config (the CLIP vision tower to draw)")
        elif "vision_config" in self.model:
            fail("model", f"model.vision_config is only for backbone 'random'; {self.backbone!r} brings its own")
        try:
            self.augment_config()
        except ValueError as err:
            raise ValueError(f"{origins.get('augment', 'config')}: {err}") from None
        if self.backbone == RANDOM_BACKBONE:
            from .configuration_hyperdet import HyperDetConfig

            try:  # cheap: catches a bad model section before any data is scanned
                HyperDetConfig(**self.model)
            except (ValueError, TypeError) as err:
                raise ValueError(f"{origins.get('model', 'config')}: model: {err}") from None

    # -- derived ------------------------------------------------------------------------------------------
    def augment_config(self) -> AugmentConfig:
        return AugmentConfig.from_dict(self.augment)

    def data_options(self, split: str) -> DataOptions:
        return DataOptions(self.image_column, self.label_column, split, self.label_map, self.max_pixels, self.shuffle_buffer)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["augment"] = self.augment_config().to_dict()
        return out


def _coerce(value, annotation, where: str):
    """A YAML / command-line value as the field's type, or a ``ValueError`` naming the field."""
    args = typing.get_args(annotation)
    if type(None) in args:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "~", "")):
            return None
        annotation = next(a for a in args if a is not type(None))
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.strip().lower() in ("true", "yes", "1", "on")
        raise ValueError(f"{where}: expects true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ValueError(f"{where}: expects an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ValueError(f"{where}: expects an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, bool):
            raise ValueError(f"{where}: expects a number, got {value!r}")
        if isinstance(value, (int, float)):
            value = float(value)
        elif isinstance(value, str):
            try:
                value = float(value.strip())  # YAML reads 1e-4 (no dot) as a string
            except ValueError:
                raise ValueError(f"{where}: expects a number, got {value!r}") from None
        else:
            raise ValueError(f"{where}: expects a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{where}: expects a finite number, got {value!r}")
        return value
    if annotation is str:
        if isinstance(value, bool):  # YAML 1.1 reads an unquoted `no` / `yes` as a boolean
            return "yes" if value else "no"
        if isinstance(value, (str, int, float)):
            return str(value)
        raise ValueError(f"{where}: expects a string, got {value!r}")
    if annotation is dict:
        if isinstance(value, dict):
            return dict(value)
        raise ValueError(f"{where}: expects a mapping (key: value), got {value!r}")
    return value


# -- YAML + command line ------------------------------------------------------------------------------------
SECTIONS = ("model", "augment", "label_map")


def load_yaml_config(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--config: no such file: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings at the top level, got {type(data).__name__}")
    return data


def _usage() -> str:
    lines = ["usage: train.py --config CONFIG.yaml [--key value ...] [--model.KEY value] [--augment.KEY value]", "",
             "Settings (YAML keys and flags):"]
    for f in fields(TrainingConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        lines.append(f"  --{f.name:<28} {f.metadata.get('help', '')} [default: {default!r}]")
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> TrainingConfig:
    """``--config FILE`` plus ``--key value`` / ``--key=value`` / ``--section.key value`` overrides.

    A flag given without a value means true. Values are read as YAML scalars (``8``, ``1e-4``, ``[2, 3]``,
    ``null``). Raises ``ValueError`` for an unknown flag, a missing file or an invalid value.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(_usage())
        raise SystemExit(0)
    pairs, i = [], 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--") or token == "--":
            raise ValueError(f"command line: unexpected argument {token!r} (settings are given as --key value)")
        key, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value, i = argv[i + 1], i + 1
            else:
                value = "true"
        pairs.append((key.replace("-", "_") if "." not in key else key, value))
        i += 1
    values, origins = {}, {}
    config_path = None
    for key, value in pairs:
        if key == "config":
            config_path = value
    if config_path:
        values = load_yaml_config(config_path)
        origins = {k: str(config_path) for k in values}
    types = typing.get_type_hints(TrainingConfig)
    for key, raw in pairs:
        if key == "config":
            continue
        if str in (types.get(key), Optional[str]):
            value = raw  # a path, an id or a name: taken as written
        else:
            try:
                value = yaml.safe_load(raw) if raw != "" else ""
            except yaml.YAMLError:
                value = raw
        if isinstance(value, (dict, list)) and key not in SECTIONS and "." not in key:
            value = raw if not isinstance(value, dict) else value
        section, dot, sub = key.partition(".")
        if dot:
            if section not in SECTIONS:
                raise ValueError(f"command line: --{key}: only {', '.join(SECTIONS)} take dotted keys")
            current = values.get(section) or {}
            if not isinstance(current, dict):
                raise ValueError(f"{origins.get(section, 'config')}: {section}: expects a mapping")
            values[section] = {**current, sub: value}
            origins[section] = f"command line (--{key})" if section not in origins else f"{origins[section]} + --{key}"
        else:
            if key in SECTIONS and isinstance(value, dict) and isinstance(values.get(key), dict):
                value = {**values[key], **value}
            values[key] = value
            origins[key] = f"command line (--{key})"
    return TrainingConfig.from_dict(values, origins)


# -- model -------------------------------------------------------------------------------------------------
def build_model(config: TrainingConfig):
    """The detector: from a CLIP checkpoint (``from_clip``), or with random weights drawn from the seed."""
    from .configuration_hyperdet import HyperDetConfig
    from .modeling_hyperdet import HyperDetForImageClassification

    torch.manual_seed(config.seed)
    if config.backbone == RANDOM_BACKBONE:
        model = HyperDetForImageClassification(HyperDetConfig(**config.model))
    else:
        model = HyperDetForImageClassification.from_clip(config.backbone, **config.model)
    return model


def cast_frozen_weights(model: torch.nn.Module, dtype: torch.dtype) -> int:
    """Store the frozen weights of every ``Linear``/``Conv2d`` in ``dtype``; returns how many tensors changed.

    Autocast casts such weights to its dtype at every call, and (unlike trainable leaves) does not cache the
    cast of tensors that need no gradient, so a frozen fp32 backbone is re-cast each step. Casting once gives
    bit-identical outputs (the same round-to-nearest cast) and halves their memory. Other modules (LayerNorm,
    embeddings), which autocast leaves in float32 (it casts matmul-like ops only), keep their float32 weights,
    and trainable tensors stay float32 for the optimizer."""
    changed = 0
    for module in model.modules():
        if not isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            continue
        for param in module.parameters(recurse=False):
            if param.requires_grad or param.dtype == dtype or not param.is_floating_point():
                continue
            param.data = param.data.to(dtype)
            changed += 1
    return changed


def trainable_state(model) -> dict:
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def frozen_fingerprint(model) -> str:
    """A short hash of every frozen parameter (name, shape, sums): a resume must run on the same backbone."""
    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                continue
            t = p.detach().double()
            h.update(f"{name}{tuple(p.shape)}{t.sum().item():.10e}{t.abs().sum().item():.10e}".encode())
    return h.hexdigest()[:16]


# -- checkpoints -----------------------------------------------------------------------------------------------
def checkpoint_root(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints ``(step, path)``, oldest first. Temporary folders of a killed save are ignored."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    out = []
    for child in root.iterdir():
        m = re.fullmatch(re.escape(CHECKPOINT_PREFIX) + r"(\d+)", child.name)
        if m and child.is_dir() and (child / STATE_FILE).is_file():
            out.append((int(m.group(1)), child))
    return sorted(out)


def find_latest_checkpoint(output_dir: str | os.PathLike) -> Optional[Path]:
    ckpts = list_checkpoints(output_dir)
    return ckpts[-1][1] if ckpts else None


def resolve_resume(config: TrainingConfig) -> Optional[Path]:
    """The checkpoint folder to resume from, None to start afresh; a named folder that is no checkpoint fails."""
    value = config.resume_from_checkpoint
    if not value:
        return None
    if value == "latest":
        return find_latest_checkpoint(config.output_dir)
    path = Path(value)
    if (path / STATE_FILE).is_file():
        return path
    if path.is_dir() and find_latest_checkpoint(path) is not None:
        return find_latest_checkpoint(path)
    raise ValueError(f"resume_from_checkpoint: {path} is not a checkpoint folder (no {STATE_FILE}) nor a run folder with one")


def _fsync_tree(folder: Path) -> None:
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move the finished ``tmp`` folder to ``final`` (replacing any) with renames only."""
    old = final.with_name(f".old-{final.name}")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    _fsync_dir(final.parent)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


# -- the run's counters (an Accelerate checkpointing object) ---------------------------------------------------------
@dataclass
class TrainState:
    """Where the run is: what a resume needs beyond weights, optimizer, scheduler and RNG.

    Counters here are global (summed over processes); each process adds its own since the last sync
    in ``pending_*`` (not saved), and ``sync`` folds them in at points every process reaches together.
    """

    global_step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of this epoch already trained on, per process
    images_seen: int = 0
    skipped: list = field(default_factory=lambda: [0] * len(SKIP_REASONS))
    epoch_skipped: list = field(default_factory=lambda: [0] * len(SKIP_REASONS))
    world_size: int = 1
    batch_size: int = 0
    fingerprint: str = ""
    val_history: list = field(default_factory=list)
    pending_images: int = field(default=0, repr=False)
    pending_skipped: Any = field(default_factory=lambda: np.zeros(len(SKIP_REASONS), dtype=np.int64), repr=False)

    def state_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if not k.startswith("pending_")}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            if hasattr(self, key) and not key.startswith("pending_"):
                setattr(self, key, value)

    def sync(self, accelerator) -> None:
        local = torch.tensor([self.pending_images, *self.pending_skipped.tolist()], dtype=torch.float64)
        total = accelerator.reduce(local.to(accelerator.device), reduction="sum").cpu() if accelerator.num_processes > 1 else local
        total = [int(round(x)) for x in total.tolist()]
        self.images_seen += total[0]
        self.skipped = [a + b for a, b in zip(self.skipped, total[1:])]
        self.epoch_skipped = [a + b for a, b in zip(self.epoch_skipped, total[1:])]
        self.pending_images, self.pending_skipped = 0, np.zeros(len(SKIP_REASONS), dtype=np.int64)


# -- helpers of the loop --------------------------------------------------------------------------------------
def _no_accelerator() -> bool:
    if torch.cuda.is_available():
        return False
    try:
        from accelerate.utils import is_mps_available, is_npu_available, is_xpu_available

        return not (is_mps_available() or is_npu_available() or is_xpu_available())
    except ImportError:  # pragma: no cover
        return True


def resolve_mixed_precision(value: str, cpu: bool) -> str:
    if value != "auto":
        return value
    if cpu:
        from .inference import cpu_has_bf16

        return "bf16" if cpu_has_bf16() else "no"
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def _agreed(batches, accelerator):
    """``(batch, is_last)`` while every process still has a batch: the epoch ends everywhere when the
    first process runs dry, so no process waits forever in a collective. One look-ahead batch."""
    it = iter(batches)

    def fetch():
        batch = next(it, None)
        if accelerator.num_processes == 1:
            return batch, batch is not None
        flag = torch.tensor([0.0 if batch is None else 1.0], device=accelerator.device)
        return batch, bool(accelerator.reduce(flag, reduction="sum").item() == accelerator.num_processes)

    current, ok = fetch()
    while ok:
        upcoming, ok_next = fetch()
        yield current, not ok_next
        current, ok = upcoming, ok_next


class _Window:
    """Sums over the micro-batches since the last log (loss, per-view losses, images, time)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.loss = 0.0
        self.views = torch.zeros(len(VIEW_NAMES), dtype=torch.float64)
        self.correct = 0
        self.images = 0
        self.start = time.perf_counter()

    def add(self, output, labels: torch.Tensor) -> None:
        n = labels.shape[0]
        with torch.no_grad():
            z = output.view_logits.detach().float()
            y = labels.to(z.device, z.dtype).view(-1, 1).expand_as(z)
            per_view = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none").sum(0)
            self.views += per_view.double().cpu()
            self.loss += float(output.loss.detach().float()) * n
            fused = output.logits.detach().float()[:, 1]
            self.correct += int(((fused >= 0).long().cpu() == labels.cpu()).sum())
        self.images += n

    def reduce(self, accelerator) -> dict:
        local = torch.tensor([self.loss, self.correct, self.images, *self.views.tolist()], dtype=torch.float64)
        total = accelerator.reduce(local.to(accelerator.device), "sum").cpu() if accelerator.num_processes > 1 else local
        images = max(total[2].item(), 1.0)
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        out = {"train/loss": total[0].item() / images, "train/acc": total[1].item() / images}
        for name, value in zip(VIEW_NAMES, total[3:].tolist()):
            out[f"train/loss_{name}"] = value / images
        out["train/images_per_s"] = total[2].item() / elapsed
        return out


def _validation_metrics(scores: list, labels: list, skipped: int) -> dict:
    """The same metrics as ``hyperdet eval`` (the package's evaluate module)."""
    from .evaluation import generator_metrics

    return generator_metrics(scores, labels, n_skipped=skipped)


# -- the run -----------------------------------------------------------------------------------------------------
class Trainer:
    """One training run (see the module docstring). ``Trainer(config).train()`` returns the run summary."""

    def __init__(self, config: TrainingConfig):
        self.config = config
        self.output_dir = Path(config.output_dir)

    # setup ----------------------------------------------------------------------------------------------------
    def _setup(self):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration

        cfg = self.config
        cpu = _no_accelerator()
        self.mixed_precision = resolve_mixed_precision(cfg.mixed_precision, cpu)
        self.accelerator = acc = Accelerator(
            cpu=cpu,
            mixed_precision=self.mixed_precision,
            log_with="tensorboard" if cfg.report_to == "tensorboard" else None,
            project_config=ProjectConfiguration(project_dir=str(self.output_dir), logging_dir=str(self.output_dir / "logs")),
            # The model's buffers (SRM kernels, position ids) are constants: no broadcast at every forward.
            kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)],
        )
        self.is_main = acc.is_main_process
        (self.output_dir / "logs").mkdir(parents=True, exist_ok=True)
        if cfg.push_to_hub:
            self._check_hub()
        self._import_model_card()

        # What to resume from, and refusing to mix two runs in one folder.
        self.resume_dir = resolve_resume(cfg)
        if cfg.resume_from_checkpoint == "latest" and self.resume_dir is None:
            logger.info("resume_from_checkpoint=latest: no checkpoint in %s yet, starting afresh", self.output_dir)
        if self.resume_dir is None and list_checkpoints(cfg.output_dir) and not cfg.overwrite_output_dir:
            raise ValueError(
                f"output_dir: {self.output_dir} holds checkpoints of an earlier run; pass --resume_from_checkpoint latest "
                "to continue it, or --overwrite_output_dir to start afresh (old checkpoints are then replaced)"
            )
        if self.is_main and self.resume_dir is None and cfg.overwrite_output_dir:
            shutil.rmtree(checkpoint_root(cfg.output_dir), ignore_errors=True)
        if self.is_main:
            for stale in checkpoint_root(cfg.output_dir).glob(".tmp-*") if checkpoint_root(cfg.output_dir).is_dir() else []:
                shutil.rmtree(stale, ignore_errors=True)  # a save that a kill interrupted

        # Data first (cheap to fail), then the model.
        self.train_source = open_source(cfg.train_data, cfg.data_options(cfg.train_split), role="train_data")
        if isinstance(self.train_source, IndexedSource):
            counts = self.train_source.class_counts()
            missing = [k for k, v in counts.items() if v == 0]
            if missing:
                raise ValueError(f"train_data: {cfg.train_data} has no {missing[0]} image (found {counts}); "
                                 "a detector needs both classes")
        self.val_source = open_source(cfg.val_data, cfg.data_options(cfg.val_split), role="val_data") if cfg.val_data else None
        logger.info("train_data: %s", self.train_source.describe())
        if self.val_source is not None:
            logger.info("val_data: %s", self.val_source.describe())

        self.model = build_model(cfg)
        self.image_size = int(self.model.config.vision_config.image_size)
        self.fingerprint = frozen_fingerprint(self.model)
        self.frozen_cast = None
        if cfg.cast_frozen_weights and self.mixed_precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.mixed_precision == "bf16" else torch.float16
            if cast_frozen_weights(self.model, dtype):
                self.frozen_cast = dtype
        n_train = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        n_all = sum(p.numel() for p in self.model.parameters())
        logger.info("model: %s, %d trainable / %d parameters, crop %d, mixed precision %s",
                    cfg.backbone, n_train, n_all, self.image_size, self.mixed_precision)
        if self.frozen_cast is not None:
            logger.info("frozen Linear/Conv weights stored in %s for training (final/ is saved in float32)",
                        self.frozen_cast)

        world, rank = acc.num_processes, acc.process_index
        self.train_data = EpochData(
            self.train_source, TrainTransform(self.image_size, cfg.augment_config()), cfg.per_device_batch_size,
            seed=cfg.seed, world_size=world, rank=rank, num_workers=cfg.num_workers, train=True,
            max_pixels=cfg.max_pixels, shuffle_buffer=cfg.shuffle_buffer, pin_memory=acc.device.type == "cuda",
        )
        self.val_data = None
        if self.val_source is not None:
            self.val_data = EpochData(
                self.val_source, EvalTransform(self.image_size), cfg.eval_batch_size or cfg.per_device_batch_size,
                seed=cfg.seed, world_size=world, rank=rank, num_workers=cfg.num_workers, train=False,
                max_pixels=cfg.max_pixels,
            )
        batches = self.train_data.num_batches
        self.steps_per_epoch = math.ceil(batches / cfg.gradient_accumulation_steps) if batches else None
        if cfg.max_steps is not None:
            self.total_steps = cfg.max_steps
        elif self.steps_per_epoch is not None:
            self.total_steps = cfg.num_epochs * self.steps_per_epoch
        else:
            raise ValueError(f"max_steps: required for {cfg.train_data}, a stream of unknown length")

        from transformers import get_scheduler

        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                           eps=cfg.adam_epsilon, weight_decay=cfg.weight_decay)
        # Accelerate steps a prepared scheduler once per process at every optimizer step: scale as its examples do.
        self.scheduler = get_scheduler(cfg.lr_scheduler, self.optimizer, num_warmup_steps=cfg.warmup_steps * world,
                                       num_training_steps=self.total_steps * world)
        self.model, self.optimizer, self.scheduler = acc.prepare(self.model, self.optimizer, self.scheduler)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.state = TrainState(world_size=world, batch_size=cfg.per_device_batch_size, fingerprint=self.fingerprint)
        acc.register_for_checkpointing(self.state)
        acc.register_save_state_pre_hook(self._save_weights_hook)
        acc.register_load_state_pre_hook(self._load_weights_hook)
        if self.resume_dir is not None:
            self._resume()
        if cfg.report_to == "tensorboard":
            acc.init_trackers("tensorboard", config=_flat_hparams(cfg.to_dict()))

    def _check_hub(self):
        from huggingface_hub.constants import HF_HUB_OFFLINE

        if HF_HUB_OFFLINE:
            raise ValueError("push_to_hub: the Hub is switched off here (HF_HUB_OFFLINE=1); unset it or drop --push_to_hub")

    def _import_model_card(self):
        try:
            from .model_card import write_model_card
        except ImportError as err:
            raise RuntimeError(
                "hyperdet_hf.model_card (write_model_card) cannot be imported, so the final model folder would have "
                f"no model card: {err}"
            ) from err
        self.write_model_card = write_model_card

    # checkpoint hooks: trainable weights only; the frozen backbone comes from --backbone --------------------------
    def _save_weights_hook(self, models, weights, output_dir):
        for i, model in enumerate(models):
            unwrapped = self.accelerator.unwrap_model(model)
            weights[i] = {n: t.contiguous() for n, t in trainable_state(unwrapped).items()}

    def _load_weights_hook(self, models, input_dir):
        from safetensors.torch import load_file

        path = Path(input_dir) / "model.safetensors"
        state = load_file(str(path))
        while models:
            unwrapped = self.accelerator.unwrap_model(models.pop())
            own = dict(unwrapped.named_parameters())
            expected = {n for n, p in own.items() if p.requires_grad}
            if set(state) != expected:
                missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
                raise ValueError(f"{input_dir}: checkpoint weights do not fit this model (missing {missing[:5]}, "
                                 f"unexpected {extra[:5]}); was it written with other model settings?")
            with torch.no_grad():
                for name in expected:
                    own[name].copy_(state[name])

    def _resume(self):
        cfg, acc = self.config, self.accelerator
        saved = json.loads((self.resume_dir / STATE_FILE).read_text())
        acc.load_state(str(self.resume_dir))
        st = self.state
        if st.fingerprint and st.fingerprint != self.fingerprint:
            raise ValueError(f"resume_from_checkpoint: {self.resume_dir} was trained on another backbone "
                             f"(fingerprint {st.fingerprint} != {self.fingerprint}); use the run's --backbone")
        before = saved.get("config", {})
        now = json.loads(json.dumps(cfg.to_dict(), default=str))
        changed = [k for k in TRAJECTORY_KEYS if k in before and before[k] != now.get(k)]
        if changed:
            logger.warning("resuming with changed settings %s: the run will not match an uninterrupted one", changed)
        if (st.world_size, st.batch_size) != (acc.num_processes, cfg.per_device_batch_size):
            consumed = st.batch_in_epoch * st.batch_size * st.world_size
            new_batch = consumed // (acc.num_processes * cfg.per_device_batch_size)
            logger.warning("resuming with %d processes x batch %d (checkpoint: %d x %d): the data position is mapped "
                           "to batch %d of the epoch (approximately)", acc.num_processes, cfg.per_device_batch_size,
                           st.world_size, st.batch_size, new_batch)
            st.batch_in_epoch, st.world_size, st.batch_size = new_batch, acc.num_processes, cfg.per_device_batch_size
        logger.info("resumed from %s: step %d, epoch %d, batch %d of the epoch", self.resume_dir, st.global_step,
                    st.epoch, st.batch_in_epoch)

    def save_checkpoint(self) -> Optional[Path]:
        cfg, acc, st = self.config, self.accelerator, self.state
        st.sync(acc)
        root = checkpoint_root(cfg.output_dir)
        final = root / f"{CHECKPOINT_PREFIX}{st.global_step}"
        tmp = root / f".tmp-{final.name}"
        if self.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if self.is_main:
            info = {"global_step": st.global_step, "epoch": st.epoch, "batch_in_epoch": st.batch_in_epoch,
                    "images_seen": st.images_seen, "skipped": dict(zip(SKIP_REASONS, st.skipped)),
                    "world_size": st.world_size, "fingerprint": st.fingerprint, "config": cfg.to_dict(),
                    "val_history": st.val_history}
            (tmp / STATE_FILE).write_text(json.dumps(info, indent=2, default=str))  # written last: marks completeness
            _fsync_tree(tmp)
            _replace_dir(tmp, final)
            if cfg.save_total_limit is not None:
                for _, old in list_checkpoints(cfg.output_dir)[:-cfg.save_total_limit]:
                    shutil.rmtree(old, ignore_errors=True)
            logger.info("saved %s", final)
        acc.wait_for_everyone()
        return final

    # the loop ----------------------------------------------------------------------------------------------------
    def setup(self) -> "Trainer":
        """Check the settings against the world (data, backbone, output folder) and build everything.

        Every ``ValueError`` a bad setting can cause is raised here, before the first step."""
        self._setup()
        return self

    def train(self) -> dict:
        if not hasattr(self, "accelerator"):
            self.setup()
        cfg, acc, st = self.config, self.accelerator, self.state
        from tqdm.auto import tqdm

        accum = cfg.gradient_accumulation_steps
        started = time.perf_counter()
        step_at_start = st.global_step
        window = _Window()
        bar = tqdm(total=self.total_steps, initial=st.global_step, disable=not acc.is_local_main_process,
                   desc="train", unit="step", dynamic_ncols=True)
        logger.info("training %d steps (%s per epoch), %d process(es) x batch %d x accumulation %d",
                    self.total_steps, self.steps_per_epoch if self.steps_per_epoch else "?", acc.num_processes,
                    cfg.per_device_batch_size, accum)
        self.model.train()
        done = st.global_step >= self.total_steps
        last_val_step = st.val_history[-1]["step"] if st.val_history else -1
        while not done:
            epoch = st.epoch
            examples_log = self._examples_log(epoch)
            epoch_complete, seen = True, 0
            for batch, is_last in _agreed(self.train_data.batches(epoch, start=st.batch_in_epoch), acc):
                seen += 1
                st.batch_in_epoch += 1
                sync = st.batch_in_epoch % accum == 0 or is_last
                pixels = batch["pixel_values"].to(acc.device, non_blocking=True)
                labels = batch["labels"].to(acc.device, non_blocking=True)
                with contextlib.nullcontext() if sync else acc.no_sync(self.model):
                    output = self.model(pixel_values=pixels, labels=labels)
                    acc.backward(output.loss / accum)
                window.add(output, batch["labels"])
                st.pending_images += int(labels.shape[0])
                st.pending_skipped += batch["skipped"].numpy().astype(np.int64)
                self._report_skipped(batch, epoch)
                if examples_log is not None:
                    examples_log.write("".join(k + "\n" for k in batch["keys"]))
                if not sync:
                    continue
                if cfg.max_grad_norm > 0:
                    acc.clip_grad_norm_(self.params, cfg.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                st.global_step += 1
                bar.update(1)
                if st.global_step % cfg.logging_steps == 0 or st.global_step == self.total_steps:
                    self._log(window, bar)
                if cfg.save_steps and st.global_step % cfg.save_steps == 0:
                    self.save_checkpoint()
                if st.global_step >= self.total_steps:
                    done = True
                    epoch_complete = is_last
                    break
            if examples_log is not None:
                examples_log.close()
            if seen == 0 and st.batch_in_epoch == 0:
                raise RuntimeError(f"train_data: epoch {epoch} produced no batch on this process; is the data readable?")
            if epoch_complete:
                st.sync(acc)
                logger.info("epoch %d done at step %d; skipped files this epoch: %s", epoch, st.global_step,
                            skip_summary(st.epoch_skipped))
                if self.val_data is not None:
                    self._validate()
                    last_val_step = st.global_step
                st.epoch += 1
                st.batch_in_epoch = 0
                st.epoch_skipped = [0] * len(SKIP_REASONS)
                if cfg.max_steps is None and st.epoch >= cfg.num_epochs:
                    done = True
        bar.close()
        st.sync(acc)
        if self.val_data is not None and last_val_step != st.global_step:
            self._validate()
        elapsed = time.perf_counter() - started
        summary = self._finish(elapsed, st.global_step - step_at_start)
        acc.end_training()
        return summary

    def _examples_log(self, epoch: int):
        if not self.config.record_examples:
            return None
        folder = self.output_dir / "logs" / "examples"
        folder.mkdir(parents=True, exist_ok=True)
        return open(folder / f"epoch{epoch}-rank{self.accelerator.process_index}.txt", "a", encoding="utf-8")

    def _report_skipped(self, batch, epoch: int) -> None:
        """Append skipped files to ``logs/skipped-rank<R>.tsv``; warn once per file (the first 50 files)."""
        if not batch["skipped_files"]:
            return
        folder = self.output_dir / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        warned = self.__dict__.setdefault("_warned", set())
        with open(folder / f"skipped-rank{self.accelerator.process_index}.tsv", "a", encoding="utf-8") as f:
            for line in batch["skipped_files"]:
                f.write(f"{epoch}\t{line}\n")
                if line not in warned and len(warned) < 50:
                    logger.warning("skipped unreadable training file: %s", line.replace("\t", " (") + ")")
                    if len(warned) == 49:
                        logger.warning("more skipped files are listed in %s only", folder / "skipped-rank*.tsv")
                warned.add(line)

    def _log(self, window: _Window, bar) -> None:
        acc, st = self.accelerator, self.state
        st.sync(acc)
        values = window.reduce(acc)
        window.reset()
        values["train/lr"] = self.scheduler.get_last_lr()[0]
        values["train/epoch"] = st.epoch + (st.batch_in_epoch / self.train_data.num_batches if self.train_data.num_batches else 0)
        values["data/skipped_files"] = sum(st.skipped)
        for reason, count in zip(SKIP_REASONS, st.skipped):
            values[f"data/skipped_{reason}"] = count
        acc.log(values, step=st.global_step)
        bar.set_postfix(loss=f"{values['train/loss']:.4f}", lr=f"{values['train/lr']:.2e}")
        logger.info("step %d: loss %.4f (views %s), lr %.3g, %.1f images/s, skipped files %s", st.global_step,
                    values["train/loss"], " ".join(f"{values['train/loss_' + n]:.3f}" for n in VIEW_NAMES),
                    values["train/lr"], values["train/images_per_s"], skip_summary(st.skipped))
        if self.is_main:
            with open(self.output_dir / "logs" / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": st.global_step, **values}) + "\n")

    @torch.no_grad()
    def _validate(self) -> dict:
        from accelerate.utils import gather_object

        acc, st = self.accelerator, self.state
        # The bare module (autocast kept): processes may hold different numbers of validation batches, and a
        # DDP forward could wait for its peers.
        model = acc.unwrap_model(self.model)
        model.eval()
        scores, labels, skipped = [], [], 0
        for batch in self.val_data.batches(0):
            out = model(pixel_values=batch["pixel_values"].to(acc.device))
            scores += torch.sigmoid(out.logits.float()[:, 1]).cpu().tolist()
            labels += batch["labels"].tolist()
            skipped += int(batch["skipped"].sum())
        model.train()
        parts = gather_object([(scores, labels, skipped)]) if acc.num_processes > 1 else [(scores, labels, skipped)]
        all_scores = [s for p in parts for s in p[0]]
        all_labels = [y for p in parts for y in p[1]]
        metrics = _validation_metrics(all_scores, all_labels, sum(p[2] for p in parts))
        record = {"step": st.global_step, "epoch": st.epoch, **metrics}
        st.val_history.append(record)
        acc.log({f"val/{k}": v for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None},
                step=st.global_step)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        logger.info("validation at step %d (epoch %d): %s (%d real, %d fake, %d skipped)", st.global_step, st.epoch,
                    shown, metrics.get("n_real", 0), metrics.get("n_fake", 0), metrics.get("n_skipped", 0))
        return metrics

    # the end ---------------------------------------------------------------------------------------------------------
    def run_config(self) -> dict:
        cfg, acc = self.config, self.accelerator
        out = cfg.to_dict()
        out.update(
            num_processes=acc.num_processes,
            total_batch_size=cfg.per_device_batch_size * acc.num_processes * cfg.gradient_accumulation_steps,
            total_steps=self.total_steps,
            crop_size=self.image_size,
            mixed_precision=self.mixed_precision,
            blur_prob=out["augment"]["blur_prob"],
            jpeg_prob=out["augment"]["jpeg_prob"],
            train_images=len(self.train_source) if isinstance(self.train_source, IndexedSource) else None,
        )
        for key in ("resume_from_checkpoint", "overwrite_output_dir"):
            out.pop(key, None)
        return out

    def _finish(self, elapsed: float, steps_run: int) -> dict:
        cfg, acc, st = self.config, self.accelerator, self.state
        val = dict(st.val_history[-1]) if st.val_history else None
        summary = {
            "global_step": st.global_step,
            "start_step": st.global_step - steps_run,
            "resumed_from": str(self.resume_dir) if self.resume_dir is not None else None,
            "epochs_completed": st.epoch,
            "images_seen": st.images_seen,
            "train_runtime_s": round(elapsed, 3),
            "steps_per_s": round(steps_run / elapsed, 4) if elapsed > 0 else None,
            "skipped_files": dict(zip(SKIP_REASONS, st.skipped)),
            "val_results": val,
            "val_history": st.val_history,
        }
        acc.wait_for_everyone()
        if self.is_main:
            final = self.output_dir / "final"
            tmp = self.output_dir / ".tmp-final"
            shutil.rmtree(tmp, ignore_errors=True)
            model = acc.unwrap_model(self.model, keep_fp32_wrapper=False)
            if self.frozen_cast is not None:
                model = self._float32_copy(model)
            model.save_pretrained(tmp)
            from .processing import default_image_processor

            default_image_processor(crop_size=self.image_size).save_pretrained(tmp)
            run_config = self.run_config()
            (tmp / "training_config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(run_config, default=str)),
                                                                     sort_keys=False))
            self.write_model_card(tmp, run_config=run_config, val_results=val)
            _fsync_tree(tmp)
            _replace_dir(tmp, final)
            self._merge_skipped_logs()
            summary["final"] = str(final)
            (self.output_dir / "train_results.json").write_text(json.dumps(summary, indent=2, default=str))
            logger.info("done: %d steps in %.1f s (%.3f steps/s); skipped files in total: %s; final model: %s",
                        st.global_step, elapsed, summary["steps_per_s"] or 0, skip_summary(st.skipped), final)
            if val:
                logger.info("final validation: %s", {k: v for k, v in val.items() if v is not None})
            if cfg.push_to_hub:
                self._push(final)
        acc.wait_for_everyone()
        return summary

    def _float32_copy(self, model):
        """The trained model with its frozen weights as loaded (float32): rebuilt from --backbone (checked
        against the run's fingerprint), with the trained weights copied in."""
        full = build_model(self.config)
        if frozen_fingerprint(full) != self.fingerprint:
            raise RuntimeError(f"backbone: {self.config.backbone} changed during the run; final/ not written")
        trained = trainable_state(model)
        own = dict(full.named_parameters())
        with torch.no_grad():
            for name, tensor in trained.items():
                own[name].copy_(tensor)
        return full

    def _merge_skipped_logs(self):
        rows = set()
        for path in (self.output_dir / "logs").glob("skipped-rank*.tsv"):
            rows.update(line for line in path.read_text(encoding="utf-8").splitlines() if line)
        if rows:
            (self.output_dir / "skipped_files.tsv").write_text(
                "epoch\tfile\treason\n" + "".join(r + "\n" for r in sorted(rows)), encoding="utf-8")

    def _push(self, folder: Path):
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(self.config.hub_model_id, private=self.config.hub_private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=self.config.hub_model_id,
                          commit_message=f"HyperDet trained {self.state.global_step} steps")
        logger.info("pushed %s to https://huggingface.co/%s", folder, self.config.hub_model_id)


def _flat_hparams(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat_hparams(value, f"{name}."))
        elif isinstance(value, (int, float, str, bool)):
            out[name] = value
        elif value is None:
            out[name] = "null"
        else:
            out[name] = json.dumps(value, default=str)
    return out


def configure_logging(output_dir: Optional[str] = None) -> None:
    """Log lines with the process rank to stderr (INFO on the main process, warnings elsewhere) and, on the
    main process, to ``<output_dir>/logs/train.log``. For the command line; a library caller keeps its own."""
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0)
    fmt = logging.Formatter(f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    pkg = logging.getLogger("hyperdet_hf")
    pkg.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    pkg.propagate = False
    for handler in list(pkg.handlers):
        pkg.removeHandler(handler)
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(fmt)
    pkg.addHandler(stream)
    if rank == 0 and output_dir:
        (Path(output_dir) / "logs").mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(Path(output_dir) / "logs" / "train.log")
        file_handler.setFormatter(fmt)
        pkg.addHandler(file_handler)
    for noisy in ("datasets", "accelerate", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING if rank == 0 else logging.ERROR)


def train(config: TrainingConfig) -> dict:
    """Run training as configured and return the run summary (also in ``<output_dir>/train_results.json``)."""
    return Trainer(config).train()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry: parse, train; a bad setting exits with status 2 and one line naming it."""
    from .runtime import keep_freed_memory

    keep_freed_memory()  # see runtime.py: no page faults on every step's activations
    try:
        config = parse_args(argv)
        configure_logging(config.output_dir)
        trainer = Trainer(config).setup()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    trainer.train()
    return 0


__all__ = [
    "TrainState",
    "Trainer",
    "TrainingConfig",
    "build_model",
    "configure_logging",
    "find_latest_checkpoint",
    "list_checkpoints",
    "main",
    "parse_args",
    "resolve_resume",
    "train",
]
