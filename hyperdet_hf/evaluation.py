"""Evaluation under the field's protocol: benchmark discovery, sampling, batched scoring, metrics, result files.

Protocol (UnivFD / CNNDetection): decode to RGB, optional degradation (robustness), **center crop, no resize**
(images smaller than the crop are zero-padded by the processor, or tiled with ``pad_mode="tile"`` as Effort does),
CLIP normalisation; ``P(fake) = softmax(logits)[:, 1]``; accuracy at ``P(fake) >= 0.5``; AP as
``sklearn.metrics.average_precision_score``; accuracy at the oracle threshold. Per generator, plus a ``mean`` row
(the mean of each metric over the generators where it is defined; counts are summed).

Benchmark layouts (one entry per generator):
- ``ROOT/<generator>/{0_real,1_fake}``, optionally under class folders (CNNDetection, UnivFD);
- UnivFD's diffusion sets, whose reals live in a sibling folder: ``ROOT/ldm_200/1_fake`` + ``ROOT/laion/0_real``,
  mapped by ``UNIVFD_SEPARATE_REALS`` (a fake folder -> its real folder; extend it with ``real_map``);
- GenImage ``ROOT/<generator>/.../{train,val}/{nature,ai}`` (only ``split`` is used when both splits exist);
- ``ROOT`` itself holding ``0_real``/``1_fake`` (or ``nature``/``ai``): one generator named after ``ROOT``;
- Fake2M / MPBench (``InfImagine/FakeImageDataset``): ``ROOT/MetaData/<split>/<name>.csv`` with labels, images under
  ``ROOT/ImageData/<split>/<name>/``; any CSV with a path and a label column (see ``read_label_csv``).

Unreadable images are skipped and counted (``n_skipped`` per generator; ``skipped.csv`` lists them); they never
stop a run.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import math
import os
import platform
import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from .image_io import DEFAULT_MAX_PIXELS, ImageError, is_image_file, load_rgb
from .layouts import LABEL_FOLDERS, Example, scan_labeled_folder
from .results_table import MEAN_KEY, detail_table, generator_keys, is_number, ordered_generators, paper_tables

logger = logging.getLogger(__name__)

METRIC_DIR = Path(__file__).resolve().parent / "metrics" / "hyperdet_detection"
METRIC_KEYS = ("acc", "real_acc", "fake_acc", "balanced_acc", "ap", "auc", "acc_oracle")
COUNT_KEYS = ("n_real", "n_fake", "n_skipped")
PAD_MODES = ("pad", "tile")

# UnivFD test set (Ojha et al. 2023, `dataset_paths.py`): diffusion fakes whose reals are a separate folder.
UNIVFD_SEPARATE_REALS: dict[str, str] = {
    "guided": "imagenet",
    "ldm_200": "laion",
    "ldm_200_cfg": "laion",
    "ldm_100": "laion",
    "glide_100_27": "laion",
    "glide_50_27": "laion",
    "glide_100_10": "laion",
    "dalle": "laion",
}

CSV_PATH_COLUMNS = ("path", "file_path", "filepath", "image_path", "img_path", "file", "filename", "file_name", "image", "img", "name")
CSV_LABEL_COLUMNS = ("label", "labels", "is_fake", "fake", "target", "class", "y")
CSV_GENERATOR_COLUMNS = ("generator", "source", "model", "subset")
_LABEL_WORDS = {"0": 0, "1": 1, "real": 0, "fake": 1, "0_real": 0, "1_fake": 1, "nature": 0, "ai": 1, "false": 0,
                "true": 1, "0.0": 0, "1.0": 1, "generated": 1, "synthetic": 1}


# -- benchmark discovery ----------------------------------------------------------------------------------
def parse_real_map(items: Optional[Iterable[str]]) -> dict[str, str]:
    """``fake=real`` pairs and/or JSON/YAML files of ``{fake_folder: real_folder}`` into one mapping."""
    out: dict[str, str] = {}
    for item in items or ():
        if "=" in item and not os.path.isfile(item):
            fake, real = item.split("=", 1)
            out[fake.strip()] = real.strip()
            continue
        path = Path(item)
        text = path.read_text()
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
        if not isinstance(data, dict):
            raise ValueError(f"{item}: expected a mapping {{fake_folder: real_folder}}")
        out.update({str(k): str(v) for k, v in data.items()})
    return out


def _filter_split(examples: list[Example], root: Path, split: Optional[str]) -> list[Example]:
    """GenImage-style ``train``/``val`` folders: keep ``split`` when both splits occur below ``root``."""
    if not split:
        return examples
    parts = [set(Path(e.path).relative_to(root).parts[:-1]) for e in examples]
    splits = {"train", "val", "test"}
    present = set().union(*parts) & splits if parts else set()
    if split not in present or len(present) < 2:
        return examples
    return [e for e, p in zip(examples, parts) if split in p]


def _has_label_children(folder: Path) -> bool:
    return any((folder / name).is_dir() for name in LABEL_FOLDERS)


def _all_images(folder: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        out += [str(Path(dirpath) / f) for f in sorted(filenames) if is_image_file(f)]
    return out


def scan_folder_benchmark(
    root: str | os.PathLike,
    real_map: Optional[Mapping[str, str]] = None,
    split: Optional[str] = "val",
) -> dict[str, list[Example]]:
    """``{generator: examples}`` for a folder benchmark root (see the module docstring for the layouts)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"benchmark root not found: {root}")
    real_map = dict(UNIVFD_SEPARATE_REALS if real_map is None else real_map)
    if _has_label_children(root):
        examples, _ = scan_labeled_folder(root, generator=root.name)
        return {root.name: _filter_split(examples, root, split)} if examples else {}
    subs = sorted(p for p in root.iterdir() if p.is_dir())
    present = {p.name for p in subs}
    real_pools = {real for fake, real in real_map.items() if fake in present and real in present}
    out: dict[str, list[Example]] = {}
    for sub in subs:
        examples, _ = scan_labeled_folder(sub, generator=sub.name)
        examples = _filter_split(examples, sub, split)
        real_name = real_map.get(sub.name)
        if real_name and real_name in present:
            real_dir = root / real_name
            fakes = [e for e in examples if e.label == 1]
            reals, _ = scan_labeled_folder(real_dir)
            reals = [r.path for r in reals if r.label == 0] or _all_images(real_dir)
            examples = [Example(p, 0, sub.name) for p in reals] + fakes
        elif sub.name in real_pools and not any(e.label == 1 for e in examples):
            continue  # a shared real folder (laion, imagenet): not a generator of its own
        if examples:
            out[sub.name] = examples
    return out


def _cell(row: Mapping[str, str], names: Sequence[str], explicit: Optional[str]) -> Optional[str]:
    if explicit:
        return row.get(explicit)
    lower = {k.lower().strip(): k for k in row if k is not None}
    for name in names:
        if name in lower:
            return row[lower[name]]
    return None


def parse_label(value) -> Optional[int]:
    if value is None:
        return None
    return _LABEL_WORDS.get(str(value).strip().lower())


def read_label_csv(
    csv_path: str | os.PathLike,
    image_roots: Sequence[str | os.PathLike] = (),
    generator: Optional[str] = None,
    path_column: Optional[str] = None,
    label_column: Optional[str] = None,
    generator_column: Optional[str] = None,
) -> tuple[list[Example], int]:
    """Examples from a CSV with an image path column and a label column (Fake2M / MPBench metadata, or yours).

    Columns are found by name (case-insensitive; path: ``path``, ``file``, ``filename``, ``image``, ...; label:
    ``label``, ``is_fake``, ``target``, ...; optional generator: ``generator``, ``source``, ...) unless given. A CSV
    without a header row is read as ``path,label[,generator]``. Labels: ``0``/``1``, ``real``/``fake``,
    ``nature``/``ai``, ``true``/``false``. Relative paths are resolved against the first of ``image_roots`` (then the
    CSV's folder) where the file exists. Returns ``(examples, n_rows_without_a_usable_label)``.
    """
    csv_path = Path(csv_path)
    roots = [Path(r) for r in image_roots] + [csv_path.parent]
    name = generator or csv_path.stem
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        sample = f.read(65536)
        f.seek(0)
        first = next(csv.reader(io.StringIO(sample)), [])
        known = {c.lower().strip() for c in first}
        has_header = bool(known & set(CSV_PATH_COLUMNS + CSV_LABEL_COLUMNS)) or bool(path_column or label_column)
        if has_header:
            rows = list(csv.DictReader(f))
        else:
            rows = [
                {"path": r[0], "label": r[1] if len(r) > 1 else None, "generator": r[2] if len(r) > 2 else None}
                for r in csv.reader(f)
                if r
            ]
    examples, bad = [], 0
    for row in rows:
        rel = _cell(row, CSV_PATH_COLUMNS, path_column)
        label = parse_label(_cell(row, CSV_LABEL_COLUMNS, label_column))
        if not rel or label is None:
            bad += 1
            continue
        gen = _cell(row, CSV_GENERATOR_COLUMNS, generator_column) if (generator_column or generator is None) else None
        path = Path(rel)
        if not path.is_absolute():
            candidates = [r / rel for r in roots]
            path = next((c for c in candidates if c.exists()), candidates[0])
        examples.append(Example(str(path), label, gen or name))
    return examples, bad


def scan_csv_benchmark(root: str | os.PathLike, split: str = "val", **columns) -> dict[str, list[Example]]:
    """Fake2M / MPBench layout: ``ROOT/MetaData/<split>/<name>.csv``, images under ``ROOT/ImageData/<split>/<name>``."""
    root = Path(root)
    meta = root / "MetaData" / split
    if not meta.is_dir():
        raise FileNotFoundError(f"{root}: no MetaData/{split} folder (Fake2M / MPBench layout)")
    out: dict[str, list[Example]] = defaultdict(list)
    for csv_path in sorted(meta.glob("*.csv")):
        roots = [root / "ImageData" / split / csv_path.stem, root / "ImageData" / split, root]
        examples, bad = read_label_csv(csv_path, roots, generator=None, **columns)
        if bad:
            logger.warning("%s: %d rows without a usable path or label", csv_path, bad)
        for e in examples:
            out[e.generator].append(e)
    return dict(out)


def discover_benchmark(
    roots: Sequence[str | os.PathLike],
    *,
    real_map: Optional[Mapping[str, str]] = None,
    split: Optional[str] = "val",
    csv_files: Sequence[str | os.PathLike] = (),
    image_root: Optional[str | os.PathLike] = None,
    csv_columns: Optional[Mapping[str, Optional[str]]] = None,
) -> dict[str, list[Example]]:
    """``{generator: examples}`` over several roots and CSV files, examples sorted by path.

    A generator name met in two roots is prefixed with its root's name. Raises ``ValueError`` when nothing
    labelled is found.
    """
    columns = {k: v for k, v in (csv_columns or {}).items() if v}
    parts: list[tuple[str, dict[str, list[Example]]]] = []
    for root in roots:
        root = Path(root)
        if (root / "MetaData").is_dir():
            found = scan_csv_benchmark(root, split=split or "val", **columns)
        else:
            found = scan_folder_benchmark(root, real_map=real_map, split=split)
        parts.append((root.name, found))
    for csv_path in csv_files:
        examples, bad = read_label_csv(csv_path, [image_root] if image_root else [], **columns)
        if bad:
            logger.warning("%s: %d rows without a usable path or label", csv_path, bad)
        grouped: dict[str, list[Example]] = defaultdict(list)
        for e in examples:
            grouped[e.generator].append(e)
        parts.append((Path(csv_path).stem, dict(grouped)))
    out: dict[str, list[Example]] = {}
    for source, found in parts:
        for gen, examples in found.items():
            key = gen if gen not in out else f"{source}/{gen}"
            out[key] = sorted((Example(e.path, e.label, key) for e in examples), key=lambda e: (e.label, e.path))
    if not out:
        raise ValueError(
            f"no labelled images under {', '.join(map(str, list(roots) + list(csv_files)))}: expected "
            "<generator>/0_real and <generator>/1_fake (optionally under class folders), GenImage nature/ai, "
            "UnivFD fake folders with their real folder (laion, imagenet), or Fake2M MetaData/<split>/*.csv"
        )
    return out


def sample_per_class(examples: Sequence[Example], max_per_class: Optional[int], seed: int = 0) -> list[Example]:
    """At most ``max_per_class`` examples of each label, drawn with ``random.Random(seed)`` from the examples
    sorted by path (the same subset whatever the file system's order); returned sorted by (label, path)."""
    ordered = sorted(examples, key=lambda e: (e.label, e.path))
    if not max_per_class or max_per_class <= 0:
        return ordered
    out = []
    for label in sorted({e.label for e in ordered}):
        group = [e for e in ordered if e.label == label]
        if len(group) > max_per_class:
            keep = sorted(random.Random(seed).sample(range(len(group)), max_per_class))
            group = [group[i] for i in keep]
        out += group
    return out


# -- preprocessing and scoring ----------------------------------------------------------------------------
def crop_size_of(processor) -> int:
    size = getattr(processor, "crop_size", None)
    if size is None:
        return 224
    if isinstance(size, Mapping):
        return int(size.get("height") or size.get("shortest_edge") or 224)
    return int(getattr(size, "height", None) or getattr(size, "shortest_edge", None) or 224)


def tile_to(img: Image.Image, size: int) -> Image.Image:
    """Repeat a smaller-than-``size`` image periodically until both sides reach ``size`` (Effort's choice)."""
    w, h = img.size
    if w >= size and h >= size:
        return img
    canvas = Image.new("RGB", (max(w, size), max(h, size)))
    for y in range(0, canvas.height, h):
        for x in range(0, canvas.width, w):
            canvas.paste(img, (x, y))
    return canvas


class _ImageDataset(torch.utils.data.Dataset):
    """Decodes, degrades, pads/tiles and processes one image; failures come back as (reason, message)."""

    def __init__(self, paths, processor, degradation=None, pad_mode="pad", max_pixels=DEFAULT_MAX_PIXELS):
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode: {pad_mode!r} is not one of {PAD_MODES}")
        self.paths = list(paths)
        self.processor = processor
        self.degradation = degradation
        self.pad_mode = pad_mode
        self.crop = crop_size_of(processor)
        self.max_pixels = max_pixels

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        path = self.paths[i]
        try:
            img = load_rgb(path, self.max_pixels)
        except ImageError as exc:
            return i, None, exc.reason, str(exc)
        try:
            if self.degradation is not None:
                img = self.degradation(img)
            if self.pad_mode == "tile":
                img = tile_to(img, self.crop)
            pixels = self.processor(images=img, return_tensors="pt")["pixel_values"][0]
        except Exception as exc:  # a processor failure on one odd image must not stop the run
            return i, None, "preprocess-failed", f"{path}: preprocess-failed ({type(exc).__name__}: {exc})"
        return i, pixels, None, None


def _collate(items):
    ok = [(i, px) for i, px, _, _ in items if px is not None]
    failed = [(i, reason, msg) for i, px, reason, msg in items if px is None]
    if ok:
        return [i for i, _ in ok], torch.stack([px for _, px in ok]), failed
    return [], None, failed


@dataclass
class ScoredBatch:
    """One batch: ``indices`` into the path list with their ``p_fake``, ``fused_logit``, ``view_logits``
    ``(n, 6)``; ``failed``: ``(index, reason, message)`` for images that could not be used."""

    indices: list[int]
    p_fake: np.ndarray
    fused_logit: np.ndarray
    view_logits: np.ndarray
    failed: list[tuple[int, str, str]]


def default_num_workers() -> int:
    cpus = os.cpu_count() or 1
    return 0 if cpus <= 2 else min(8, cpus - 1)


def check_processor(processor) -> None:
    if getattr(processor, "do_resize", False):
        logger.warning(
            "the model's image processor resizes images (do_resize=True): this destroys upsampling traces and is "
            "not the field's protocol (center crop, no resize); see hyperdet_hf.default_image_processor()"
        )


def score_paths(
    model,
    processor,
    paths: Sequence[str],
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    degradation: Optional[Callable[[Image.Image], Image.Image]] = None,
    pad_mode: str = "pad",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
    desc: str = "scoring",
) -> Iterator[ScoredBatch]:
    """Score images in batches under ``torch.inference_mode()``, in path order; yields one ``ScoredBatch`` each."""
    from tqdm.auto import tqdm

    dataset = _ImageDataset(paths, processor, degradation, pad_mode, max_pixels)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=_collate,
        persistent_workers=False,
    )
    device = next(model.parameters()).device
    bar = tqdm(total=len(dataset), desc=desc, unit="img", disable=None if progress else True, dynamic_ncols=True)
    try:
        with torch.inference_mode():
            for indices, pixels, failed in loader:
                if pixels is None:
                    batch = ScoredBatch([], np.zeros(0), np.zeros(0), np.zeros((0, 6)), failed)
                else:
                    out = model(pixel_values=pixels.to(device))
                    p = out.logits.float().softmax(-1)[:, 1]
                    batch = ScoredBatch(
                        indices,
                        p.cpu().numpy().astype(np.float64),
                        out.fused_logit.float().cpu().numpy().astype(np.float64),
                        out.view_logits.float().cpu().numpy().astype(np.float64),
                        failed,
                    )
                bar.update(len(indices) + len(failed))
                yield batch
    finally:
        bar.close()


# -- metrics ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def load_detection_metric():
    """The package's local ``evaluate`` metric module (``hyperdet_hf/metrics/hyperdet_detection``); no Hub access."""
    import evaluate

    return evaluate.load(str(METRIC_DIR), keep_in_memory=True)


def generator_metrics(scores: Sequence[float], labels: Sequence[int], n_skipped: int = 0) -> dict:
    """Metrics of one generator through the ``evaluate`` module (all ``None`` when nothing was scored)."""
    if len(scores):
        row = load_detection_metric().compute(predictions=[float(s) for s in scores], references=[int(y) for y in labels])
    else:
        row = {k: None for k in METRIC_KEYS + ("threshold_oracle",)}
        row.update(n_real=0, n_fake=0)
    ordered = {k: row.get(k) for k in ("acc", "real_acc", "fake_acc", "ap", "n_real", "n_fake")}
    ordered.update({k: row.get(k) for k in ("balanced_acc", "auc", "acc_oracle", "threshold_oracle")})
    ordered["n_skipped"] = int(n_skipped)
    return ordered


def mean_row(results: Mapping[str, Mapping]) -> dict:
    """Mean over generators of each metric (where defined; ``n_generators`` counts the generators), summed counts."""
    rows = [results[g] for g in generator_keys(results)]
    out: dict = {}
    for key in METRIC_KEYS:
        values = [r[key] for r in rows if is_number(r.get(key))]
        out[key] = float(np.mean(values)) if values else None
    for key in COUNT_KEYS:
        out[key] = int(sum(r.get(key) or 0 for r in rows))
    out["n_generators"] = len(rows)
    # keep the contract's fields first
    order = ["acc", "real_acc", "fake_acc", "ap", "n_real", "n_fake"]
    return {k: out[k] for k in order} | {k: v for k, v in out.items() if k not in order}


@dataclass
class EvalOutput:
    results: dict  # results.json
    scores: list[dict]  # scores.csv rows: path, generator, label, score
    skipped: list[dict]  # path, generator, label, reason, message
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        n = len(self.scores) + len(self.skipped)
        return n / self.seconds if self.seconds > 0 else float("nan")


def evaluate_benchmark(
    model,
    processor,
    benchmark: Mapping[str, Sequence[Example]],
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    degradation: Optional[Callable[[Image.Image], Image.Image]] = None,
    pad_mode: str = "pad",
    progress: bool = True,
    desc: str = "eval",
) -> EvalOutput:
    """Score every example (batches span generators) and compute per-generator metrics plus the mean row."""
    examples = [e for gen in benchmark for e in benchmark[gen]]
    p_fake = np.full(len(examples), np.nan)
    reasons: dict[int, tuple[str, str]] = {}
    start = time.perf_counter()
    for batch in score_paths(
        model, processor, [e.path for e in examples], batch_size=batch_size, num_workers=num_workers,
        degradation=degradation, pad_mode=pad_mode, progress=progress, desc=desc,
    ):
        p_fake[batch.indices] = batch.p_fake
        for i, reason, message in batch.failed:
            reasons[i] = (reason, message)
    seconds = time.perf_counter() - start
    scores, skipped = [], []
    by_gen_scores: dict[str, list] = defaultdict(list)
    by_gen_skipped: dict[str, int] = defaultdict(int)
    for i, e in enumerate(examples):
        if i in reasons:
            skipped.append({"path": e.path, "generator": e.generator, "label": e.label, "reason": reasons[i][0],
                            "message": reasons[i][1]})
            by_gen_skipped[e.generator] += 1
        else:
            scores.append({"path": e.path, "generator": e.generator, "label": e.label, "score": float(p_fake[i])})
            by_gen_scores[e.generator].append((float(p_fake[i]), e.label))
    results: dict = {}
    for gen in ordered_generators(benchmark):
        pairs = by_gen_scores.get(gen, [])
        results[gen] = generator_metrics([s for s, _ in pairs], [y for _, y in pairs], by_gen_skipped.get(gen, 0))
        if not results[gen]["n_real"] or not results[gen]["n_fake"]:
            logger.warning("%s: %d real and %d fake images scored; metrics needing both classes are null",
                           gen, results[gen]["n_real"], results[gen]["n_fake"])
    results[MEAN_KEY] = mean_row(results)
    return EvalOutput(results, scores, skipped, seconds)


# -- result files -----------------------------------------------------------------------------------------
def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return _json_safe(obj.item())
    return obj


def write_json(path: str | os.PathLike, data) -> Path:
    path = Path(path)
    path.write_text(json.dumps(_json_safe(data), indent=2) + "\n", encoding="utf-8")
    return path


def results_markdown(results: Mapping, method: str = "HyperDet", title: Optional[str] = None) -> str:
    lines = [f"# {title or 'Evaluation results'}", ""]
    lines += [paper_tables(results, method=method, heading_level=2), "", "## Per generator", ""]
    lines += [
        "Accuracy at P(fake) >= 0.5 overall and on real / fake images, AP (sklearn average_precision_score, fake = "
        "positive), ROC AUC, accuracy at the oracle threshold (the best threshold on these scores) and that "
        "threshold, counts (images that could not be read are skipped and counted). The mean row averages each "
        "metric over generators and sums the counts.",
        "",
        detail_table(results),
        "",
    ]
    return "\n".join(lines)


def write_scores_csv(path: str | os.PathLike, scores: Sequence[Mapping]) -> Path:
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "generator", "label", "score"])
        for row in scores:
            writer.writerow([row["path"], row["generator"], row["label"], repr(float(row["score"]))])
    return path


def read_scores_csv(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return [
            {"path": r["path"], "generator": r["generator"], "label": int(r["label"]), "score": float(r["score"])}
            for r in csv.DictReader(f)
        ]


def write_outputs(out_dir: str | os.PathLike, output: EvalOutput, *, method: str = "HyperDet", info: Optional[dict] = None,
                  title: Optional[str] = None) -> dict[str, Path]:
    """``results.json``, ``results.md``, ``scores.csv``, ``skipped.csv`` (when any) and ``eval_info.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "results.json": write_json(out_dir / "results.json", output.results),
        "scores.csv": write_scores_csv(out_dir / "scores.csv", output.scores),
    }
    md = out_dir / "results.md"
    md.write_text(results_markdown(output.results, method=method, title=title), encoding="utf-8")
    files["results.md"] = md
    skipped_path = out_dir / "skipped.csv"
    if output.skipped:
        with open(skipped_path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["path", "generator", "label", "reason", "message"])
            writer.writeheader()
            writer.writerows(output.skipped)
        files["skipped.csv"] = skipped_path
    elif skipped_path.exists():
        skipped_path.unlink()
    if info is not None:
        files["eval_info.json"] = write_json(out_dir / "eval_info.json", info)
    return files


# -- the whole command ------------------------------------------------------------------------------------
class ModelLoadError(RuntimeError):
    """The model named for an evaluation could not be loaded."""


@dataclass
class EvalConfig:
    """Settings of ``hyperdet eval`` / ``training/eval.py``."""

    model: str
    data: list[str] = field(default_factory=list)
    output_dir: str = "eval_out"
    csv: list[str] = field(default_factory=list)
    image_root: Optional[str] = None
    csv_path_column: Optional[str] = None
    csv_label_column: Optional[str] = None
    csv_generator_column: Optional[str] = None
    real_map: list[str] = field(default_factory=list)
    split: Optional[str] = "val"
    max_per_class: Optional[int] = None
    seed: int = 0
    batch_size: int = 32
    num_workers: Optional[int] = None
    dtype: str = "auto"
    device: Optional[str] = None
    pad_mode: str = "pad"
    degradation: Optional[str] = None
    robustness: bool = False
    blur_sigmas: list[float] = field(default_factory=lambda: [1.0, 2.0, 3.0, 4.0])
    jpeg_qualities: list[int] = field(default_factory=lambda: [90, 80, 70, 60, 50, 40, 30])
    plots: bool = True
    progress: bool = True
    method_name: Optional[str] = None


def _environment() -> dict:
    import transformers

    from . import __version__

    return {"hyperdet_hf": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}


def run_evaluation(config: EvalConfig) -> dict:
    """Load the model, discover and sample the benchmark, evaluate (and sweep degradations), write the files.

    Returns ``{"results": ..., "files": {...}, "info": ..., "robustness": ... or None}``.
    """
    from .inference import load_detector, resolve_dtype
    from .robustness import parse_degradation, robustness_sweep, write_robustness

    if not config.data and not config.csv:
        raise ValueError("give a benchmark root (--data) or a label CSV (--csv)")
    degradation = parse_degradation(config.degradation) if config.degradation else None
    benchmark = discover_benchmark(
        config.data,
        real_map={**UNIVFD_SEPARATE_REALS, **parse_real_map(config.real_map)},
        split=config.split,
        csv_files=config.csv,
        image_root=config.image_root,
        csv_columns={"path_column": config.csv_path_column, "label_column": config.csv_label_column,
                     "generator_column": config.csv_generator_column},
    )
    benchmark = {g: sample_per_class(ex, config.max_per_class, config.seed) for g, ex in benchmark.items()}
    try:
        model, processor = load_detector(config.model, dtype=config.dtype, device=config.device)
    except Exception as exc:  # noqa: BLE001 - one clear error whatever went wrong while loading
        raise ModelLoadError(f"could not load the model {config.model!r}: {type(exc).__name__}: {exc}") from exc
    check_processor(processor)
    method = config.method_name or Path(str(config.model).rstrip("/")).name or "HyperDet"
    workers = default_num_workers() if config.num_workers is None else config.num_workers
    common = dict(batch_size=config.batch_size, num_workers=workers, pad_mode=config.pad_mode, progress=config.progress)

    output = evaluate_benchmark(model, processor, benchmark, degradation=degradation, desc="eval", **common)
    info = {
        "model": str(config.model),
        "data": [str(d) for d in config.data],
        "csv": [str(c) for c in config.csv],
        "dtype": str(resolve_dtype(config.dtype, next(model.parameters()).device)).replace("torch.", ""),
        "device": str(next(model.parameters()).device),
        "crop_size": crop_size_of(processor),
        "pad_mode": config.pad_mode,
        "degradation": config.degradation,
        "max_per_class": config.max_per_class,
        "seed": config.seed,
        "split": config.split,
        "batch_size": config.batch_size,
        "num_workers": workers,
        "n_generators": len(benchmark),
        "n_images": len(output.scores) + len(output.skipped),
        "n_scored": len(output.scores),
        "n_skipped": len(output.skipped),
        "seconds": round(output.seconds, 3),
        "images_per_second": round(output.images_per_second, 3),
        "generators": {g: {"n_real": sum(e.label == 0 for e in ex), "n_fake": sum(e.label == 1 for e in ex)}
                       for g, ex in benchmark.items()},
        "config": asdict(config),
        "environment": _environment(),
    }
    title = f"Evaluation of {method}" + (f" under {config.degradation}" if config.degradation else "")
    files = write_outputs(config.output_dir, output, method=method, info=info, title=title)
    robustness = None
    plots = config.plots
    if plots:
        try:
            from .plots import plot_per_generator
        except ImportError as exc:  # matplotlib is an optional dependency (the `eval` extra)
            logger.warning("no plots: %s (pip install 'hyperdet-hf[eval]')", exc)
            plots = False
    if plots:
        files["per_generator.png"] = plot_per_generator(output.results, Path(config.output_dir) / "per_generator.png",
                                                        title=method)
    if config.robustness:
        robustness = robustness_sweep(
            model, processor, benchmark, blur_sigmas=config.blur_sigmas, jpeg_qualities=config.jpeg_qualities,
            clean=output.results if degradation is None else None, **common,
        )
        files.update(write_robustness(config.output_dir, robustness, method=method, plots=plots))
    return {"results": output.results, "files": files, "info": info, "robustness": robustness}
