"""Hub model cards for HyperDet checkpoints, filled from a run's settings and its evaluation results.

``write_model_card(folder, run_config=..., val_results=..., eval_results=...)`` writes ``<folder>/README.md``:
YAML metadata (library, pipeline tag, license, base model, datasets, ``model-index`` with per-generator
accuracy and AP from ``eval_results``), then intended use, loading with ``trust_remote_code=True`` and with the
pipeline, the training recipe, the evaluation protocol, limits and the citation. The template is package
data (``hyperdet_hf/templates/model_card.md``, a ``string.Template``), so an installed package can write cards.

Command line (also ``model_cards/generate_card.py``)::

    python -m hyperdet_hf.model_card --model DIR [--eval_results results.json] [--val_results val.json]
        [--run_config run.yaml] [--eval_dataset NAME] [--output README.md]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Mapping, Optional

import yaml

from .results_table import MEAN_KEY, detail_table, display_name, generator_keys, ordered_generators, paper_tables

TEMPLATE_NAME = "model_card.md"
DEFAULT_LICENSE = "apache-2.0"
DEFAULT_TAGS = [
    "hyperdet",
    "synthetic-image-detection",
    "ai-generated-image-detection",
    "image-forensics",
    "clip",
    "lora",
]
# Files a training run may leave beside the model, read by the command line when --run_config is not given.
RUN_CONFIG_FILES = ("run_config.json", "run_config.yaml", "training_config.json", "training_config.yaml", "config.yaml")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def _package_version() -> str:
    try:
        from . import __version__

        return __version__
    except ImportError:  # pragma: no cover
        return "unknown"


def load_template() -> Template:
    return Template(resources.files("hyperdet_hf").joinpath("templates", TEMPLATE_NAME).read_text(encoding="utf-8"))


def hub_id(value: Any) -> Optional[str]:
    """``value`` when it reads as a Hub repository id (``owner/name``) and is not a local path, else None."""
    if not isinstance(value, str) or not _HUB_ID.match(value) or value.startswith("."):
        return None
    return None if os.path.exists(value) else value


def _number(value) -> Optional[float]:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _short(value: Any, limit: int = 160) -> str:
    if isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "benchmark"


def _read_model_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


# -- metadata ---------------------------------------------------------------------------------------------
def eval_dataset_info(run_config: Mapping) -> tuple[str, str, str]:
    """(name, type, split) of the evaluation benchmark named in ``run_config`` (keys ``eval_dataset``,
    ``eval_dataset_type``, ``eval_split``), with neutral defaults."""
    name = str(run_config.get("eval_dataset") or "Synthetic-image benchmark")
    dtype = str(run_config.get("eval_dataset_type") or hub_id(run_config.get("eval_dataset")) or _slug(name))
    split = str(run_config.get("eval_split") or "test")
    return name, dtype, split


def model_index(model_name: str, eval_results: Mapping, run_config: Mapping) -> list[dict]:
    """``model-index`` entries: one result per generator (and the mean), each with accuracy and AP.

    Values are the fractions of ``results.json`` unchanged (YAML keeps every float exactly)."""
    name, dtype, split = eval_dataset_info(run_config)
    entries = []
    gens = ordered_generators(generator_keys(eval_results))
    for gen in gens + ([MEAN_KEY] if MEAN_KEY in eval_results else []):
        row = eval_results[gen]
        metrics = []
        acc, ap = _number(row.get("acc")), _number(row.get("ap"))
        label = display_name(gen) if gen != MEAN_KEY else f"mean over {len(gens)} generators"
        if acc is not None:
            metrics.append({"type": "accuracy", "value": acc, "name": f"Accuracy at P(fake) >= 0.5 ({label})"})
        if ap is not None:
            metrics.append({"type": "average_precision", "value": ap, "name": f"Average precision ({label})"})
        if not metrics:
            continue
        entries.append(
            {
                "task": {"type": "image-classification", "name": "Synthetic image detection"},
                "dataset": {"name": f"{name} ({label})", "type": dtype, "config": str(gen), "split": split},
                "metrics": metrics,
            }
        )
    return [{"name": model_name, "results": entries}] if entries else []


def card_metadata(model_name: str, run_config: Mapping, eval_results: Optional[Mapping]) -> dict:
    meta: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": "image-classification",
        "license": str(run_config.get("license") or DEFAULT_LICENSE),
        "tags": DEFAULT_TAGS + [t for t in _as_list(run_config.get("tags")) if t not in DEFAULT_TAGS],
    }
    base = hub_id(run_config.get("backbone"))
    if base:
        meta["base_model"] = base
    datasets = []
    for key in ("train_data", "val_data", "datasets", "eval_dataset"):
        for value in _as_list(run_config.get(key)):
            ds = hub_id(value)
            if ds and ds not in datasets:
                datasets.append(ds)
    if datasets:
        meta["datasets"] = datasets
    meta["metrics"] = ["accuracy", "average_precision"]
    if eval_results:
        index = model_index(model_name, eval_results, run_config)
        if index:
            meta["model-index"] = index
    return meta


# -- body sections ----------------------------------------------------------------------------------------
def _architecture(model_config: Mapping) -> str:
    if not model_config:
        return ""
    vision = model_config.get("vision_config") or {}
    adapter = model_config.get("adapter_type", "hyper")
    views = model_config.get("view_source", "srm")
    lines = ["## Model", "", "| setting | value |", "|---|---|"]
    rows = [
        ("backbone (CLIP vision tower)", f"{vision.get('num_hidden_layers', '?')} layers, hidden {vision.get('hidden_size', '?')}, "
         f"patch {vision.get('patch_size', '?')}, image {vision.get('image_size', '?')}, projection {vision.get('projection_dim', '?')}"),
        ("adapters", {"hyper": "hypernetwork-generated LoRA (HyperDet)", "lora": "independent LoRA per view (baseline)",
                      "none": "none: frozen backbone + linear head (baseline)"}.get(adapter, adapter)),
        ("views", "5 SRM group residuals + the original image" if views == "srm" else "the original image only (ablation)"),
        ("tuned blocks (0-based)", model_config.get("tuned_layers")),
        ("LoRA positions / rank / alpha", f"{model_config.get('target_modules')} / {model_config.get('lora_rank')} / "
         f"{model_config.get('lora_alpha')}"),
        ("fusion of the view logits", model_config.get("fusion")),
        ("loss weight of the original view (alpha, Eq. 9)", model_config.get("loss_alpha")),
        ("labels", model_config.get("id2label")),
    ]
    lines += [f"| {k} | {_short(v)} |" for k, v in rows if v is not None]
    return "\n".join(lines)


def _results_section(eval_results: Optional[Mapping], val_results: Optional[Mapping], run_config: Mapping, model_name: str) -> str:
    parts = []
    if eval_results:
        name, _, split = eval_dataset_info(run_config)
        n_gen = len(generator_keys(eval_results))
        parts += [
            f"Evaluated with `hyperdet eval` on **{name}** ({split}, {n_gen} generators) under the protocol below. "
            "Accuracy at P(fake) >= 0.5 and average precision, in percent; the last column is the mean over "
            "generators (the paper's avg. Acc and mAP).",
            "",
            paper_tables(eval_results, method=model_name, heading_level=3),
            "",
            "### Per generator",
            "",
            "Real/fake accuracy at 0.5, AUC, and the accuracy at the oracle threshold (the best single threshold "
            "on that generator's scores: an upper bound, not an operating point).",
            "",
            detail_table(eval_results),
        ]
    if val_results:
        parts += [
            "",
            "### Validation at the end of training",
            "",
            "On the held-out validation split of the training data (same generator family as training).",
            "",
            "| metric | value |",
            "|---|---:|",
        ]
        for key, value in val_results.items():
            num = _number(value)
            shown = f"{num:.4f}" if num is not None and isinstance(value, float) else ("—" if value is None else _short(value))
            parts.append(f"| {key} | {shown} |")
    if not parts:
        parts = [
            "No evaluation results were recorded with this checkpoint. Evaluate it with "
            "`hyperdet eval --model DIR --data ROOT --output_dir OUT`, then regenerate this card with "
            "`python model_cards/generate_card.py --model DIR --eval_results OUT/results.json`."
        ]
    return "\n".join(parts).strip()


_RECIPE_KEYS = [
    ("backbone", "backbone"),
    ("train_data", "training data"),
    ("val_data", "validation data"),
    ("max_steps", "steps"),
    ("num_epochs", "epochs"),
    ("per_device_batch_size", "batch size per device"),
    ("learning_rate", "learning rate"),
    ("weight_decay", "weight decay"),
    ("seed", "seed"),
    ("blur_prob", "Gaussian blur probability"),
    ("jpeg_prob", "JPEG probability"),
    ("crop_size", "crop size"),
]


CARD_KEYS = ("model_name", "hub_model_id", "license", "tags", "eval_dataset", "eval_dataset_type", "eval_split")


def _training_section(run_config: Mapping) -> str:
    run = {k: v for k, v in run_config.items() if k not in CARD_KEYS}
    lines = [
        "The paper trains on the 720k ProGAN images of CNNDetection (20 classes), with Gaussian blur and JPEG "
        "augmentation each with probability 0.1, learning rate 1e-4, 5 epochs; only the hypernetwork, its "
        "embeddings and the linear head train, the CLIP backbone stays frozen. The loss is Eq. 9: "
        "`alpha * BCE(original view) + (1 - alpha) * mean BCE(SRM views)`.",
        "",
    ]
    if not run:
        return "\n".join(lines + ["No training settings were recorded with this checkpoint."])
    rows = [(label, run[key]) for key, label in _RECIPE_KEYS if run.get(key) is not None]
    if rows:
        lines += ["This checkpoint's run:", "", "| setting | value |", "|---|---|"]
        lines += [f"| {label} | {_short(value)} |" for label, value in rows]
    shown = {key for key, _ in _RECIPE_KEYS if run.get(key) is not None}
    rest = {k: v for k, v in run.items() if k not in shown}
    if rest:
        lines += ["", "<details><summary>All run settings</summary>", "", "```yaml"]
        lines.append(yaml.safe_dump(json.loads(json.dumps(rest, default=str)), sort_keys=False, allow_unicode=True).rstrip())
        lines += ["```", "", "</details>"]
    return "\n".join(lines)


def _protocol_section(model_config: Mapping) -> str:
    crop = (model_config.get("vision_config") or {}).get("image_size", 224)
    return "\n".join(
        [
            f"- Test-time preprocessing as in UnivFD and CNNDetection: decode to RGB, **center crop {crop}, no resize**; "
            "images smaller than the crop are zero-padded (`--pad_mode tile` tiles them instead, as Effort does); "
            "CLIP mean/std normalisation.",
            "- Score `P(fake) = softmax(logits)[:, 1]` (the sigmoid of the fused logit). Accuracy at `P(fake) >= 0.5`, "
            "reported overall and for real and fake images separately; average precision "
            "(`sklearn.metrics.average_precision_score`, fake = positive); AUC; accuracy at the oracle threshold "
            "(as UnivFD reports).",
            "- Per generator, then the mean over generators. `--max_per_class N` samples N images per class per "
            "generator with a fixed seed (UnivFD's protocol samples a fixed number per class).",
            "- Robustness (the paper's Figures 5-6): Gaussian blur sigma 1-4 and JPEG quality 90-30 (step 10), applied "
            "to the decoded image before the crop (`hyperdet eval --robustness`).",
            "- Layouts: `<generator>/{0_real,1_fake}` (optionally under class folders); UnivFD's diffusion sets with "
            "reals in a separate folder (`laion`, `imagenet`); GenImage `nature`/`ai`; Fake2M/MPBench CSV metadata.",
        ]
    )


def card_model_name(folder: Path, run_config: Mapping) -> str:
    """``model_name``, else the tail of ``hub_model_id``, else the folder's name; a run's ``final`` (or a hidden /
    temporary staging) folder is named after the run (``output_dir``, else the parent folder)."""
    if run_config.get("model_name"):
        return str(run_config["model_name"])
    if run_config.get("hub_model_id"):
        return str(run_config["hub_model_id"]).rstrip("/").split("/")[-1]
    folder = folder.resolve()
    name = folder.name
    if name == "final" or name.startswith((".", "tmp")) or not name:
        name = Path(str(run_config.get("output_dir") or "")).name or folder.parent.name
    return name or "hyperdet"


def render_model_card(
    folder: str | os.PathLike,
    *,
    run_config: Mapping,
    val_results: Optional[Mapping] = None,
    eval_results: Optional[Mapping] = None,
) -> str:
    """The card's text (see ``write_model_card``)."""
    folder = Path(folder)
    run_config = dict(run_config or {})
    model_config = _read_model_config(folder)
    model_name = card_model_name(folder, run_config)
    repo_id = str(run_config.get("hub_model_id") or f"your-org/{model_name}")
    meta = card_metadata(model_name, run_config, eval_results)
    summary = (
        f"HyperDet detector built on `{run_config['backbone']}`." if run_config.get("backbone") else "HyperDet detector."
    )
    text = load_template().substitute(
        metadata=yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000).rstrip(),
        model_name=model_name,
        summary=summary,
        architecture=_architecture(model_config),
        results=_results_section(eval_results, val_results, run_config, model_name),
        repo_id=repo_id,
        training=_training_section(run_config),
        protocol=_protocol_section(model_config),
        package_version=_package_version(),
    )
    return re.sub(r"\n{3,}", "\n\n", text)


def write_model_card(
    folder: str | os.PathLike,
    *,
    run_config: dict,
    val_results: dict | None = None,
    eval_results: dict | None = None,
) -> Path:
    """Write ``<folder>/README.md`` (replacing any) and return its path.

    ``run_config``: the training run's settings (backbone, data, steps, lr, seed, overrides, ...; optional keys
    ``model_name``, ``hub_model_id``, ``license``, ``tags``, ``eval_dataset``, ``eval_dataset_type``, ``eval_split``
    shape the card). ``val_results``: end-of-training validation metrics. ``eval_results``: a
    ``results.json``-shaped dict; it feeds the results tables and ``model-index``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = render_model_card(folder, run_config=run_config, val_results=val_results, eval_results=eval_results)
    path = folder / "README.md"
    path.write_text(text, encoding="utf-8")
    return path


def read_card_metadata(path: str | os.PathLike) -> dict:
    """The YAML metadata block of a card (for checks)."""
    text = Path(path).read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        raise ValueError(f"{path}: no YAML metadata block")
    block = text[4 : text.index("\n---\n", 4)]
    return yaml.safe_load(block)


def load_mapping(path: str | os.PathLike) -> dict:
    """A dict from a JSON or YAML file."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def find_run_config(folder: Path) -> dict:
    """Run settings left beside a model (or in its parent run folder), else an empty dict."""
    for base in (folder, folder.parent):
        for name in RUN_CONFIG_FILES:
            if (base / name).is_file():
                try:
                    return load_mapping(base / name)
                except (ValueError, json.JSONDecodeError, yaml.YAMLError):
                    continue
    return {}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="generate_card",
        description="Write a Hub model card (README.md) for a HyperDet checkpoint from its run settings and results.",
    )
    parser.add_argument("--model", required=True, help="the model folder (the card is written there unless --output)")
    parser.add_argument("--eval_results", help="results.json from `hyperdet eval` (feeds the tables and model-index)")
    parser.add_argument("--val_results", help="JSON/YAML of end-of-training validation metrics")
    parser.add_argument("--run_config", help="JSON/YAML of the training run's settings (default: looked up beside the model)")
    parser.add_argument("--eval_dataset", help="name of the evaluation benchmark (default: from eval_info.json beside results.json)")
    parser.add_argument("--hub_model_id", help="repository id used in the card's code snippets")
    parser.add_argument("--output", help="write the card here instead of <model>/README.md")
    args = parser.parse_args(argv)

    folder = Path(args.model)
    if not folder.is_dir():
        parser.error(f"--model: not a folder: {folder}")
    run_config = load_mapping(args.run_config) if args.run_config else find_run_config(folder)
    eval_results = load_mapping(args.eval_results) if args.eval_results else None
    val_results = load_mapping(args.val_results) if args.val_results else None
    if args.eval_dataset:
        run_config["eval_dataset"] = args.eval_dataset
    elif eval_results is not None and "eval_dataset" not in run_config:
        info = Path(args.eval_results).with_name("eval_info.json")
        if info.is_file():
            roots = json.loads(info.read_text()).get("data") or []
            if roots:
                run_config["eval_dataset"] = " + ".join(Path(r).name for r in roots)
    if args.hub_model_id:
        run_config["hub_model_id"] = args.hub_model_id
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            render_model_card(folder, run_config=run_config, val_results=val_results, eval_results=eval_results), encoding="utf-8"
        )
    else:
        out = write_model_card(folder, run_config=run_config, val_results=val_results, eval_results=eval_results)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
