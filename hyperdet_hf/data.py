"""Training and validation data as `datasets` streams, split over processes and DataLoader workers.

Sources (``open_source``):
- a local folder in the CNNDetection layout (``<root>/<class>/{0_real,1_fake}/...``, any depth, label from
  the nearest ``0_real``/``1_fake`` folder) or GenImage's (``nature``/``ai``): scanned once, random access;
- a folder written by ``Dataset.save_to_disk``: random access;
- a Hub dataset id (or a local folder of parquet files, the same code path) read with ``streaming=True``;
  its image and label columns are named in the config.

Why not a streaming ``imagefolder``: it has one shard and drops labels when files sit at mixed depths.
Each epoch is instead ``IterableDataset.from_generator`` over shards this module plans itself:

- Random-access sources: a permutation seeded by ``(seed, epoch)`` is padded (by wrapping) to a multiple of
  the number of processes and dealt round-robin, so every process gets the same number of examples and
  batches (no process waits at a collective for one that ran dry), and every example is seen exactly
  once per epoch when the count divides evenly. Each *batch* is one shard: DataLoader worker ``w`` gets
  shards ``w, w+K, ...`` and the DataLoader takes batches from workers round-robin, so batches arrive in
  plan order whatever the number of workers, and resuming at batch ``n`` just drops the first ``n``
  shards (no image is decoded to skip).
- Streams: shard files are dealt to processes when their count divides evenly, otherwise every process
  reads all and keeps every ``world``-th record (as ``datasets.distributed.split_dataset_by_node``);
  shard order is permuted per epoch, records pass a seeded shuffle buffer. The epoch ends for all
  processes when the first one runs dry (the loop agrees on it); a resume re-reads and drops the first
  batches of the epoch.

Bad images never stop a run: every file goes through ``image_io.load_rgb``; unreadable ones are skipped and
counted by reason, and the counts ride along with the next good example, so they reach the training loop
from inside DataLoader workers. In a training batch a skipped file is replaced by another file drawn with a
seeded generator, so batches keep their size and position.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import numpy as np
import torch
from torch.utils.data import DataLoader

from .image_io import DEFAULT_MAX_PIXELS, ImageError, load_rgb
from .layouts import LABEL_FOLDERS, scan_labeled_folder

logger = logging.getLogger(__name__)

SKIP_REASONS = ("missing", "empty", "not-an-image", "too-large", "corrupt", "no-label")
_REASON_INDEX = {r: i for i, r in enumerate(SKIP_REASONS)}
MAX_REPLACEMENTS = 1000  # consecutive unreadable draws for one slot before the run is declared broken

# Label values understood without a ``label_map`` (case-insensitive strings, plus 0/1 and booleans).
KNOWN_LABELS = {
    **{k.lower(): v for k, v in LABEL_FOLDERS.items()},
    "real": 0, "fake": 1, "0": 0, "1": 1, "false": 0, "true": 1,
    "human": 0, "authentic": 0, "natural": 0, "synthetic": 1, "generated": 1, "ai-generated": 1, "ai_generated": 1,
}
PARQUET_LIKE = (".parquet", ".jsonl", ".csv", ".arrow")


# -- options and labels -------------------------------------------------------------------------------
@dataclass
class DataOptions:
    """How to read a source: column names for datasets, the split, the pixel limit, the shuffle buffer."""

    image_column: str = "image"
    label_column: str = "label"
    split: str = "train"
    label_map: Optional[dict] = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    shuffle_buffer: int = 1000


class LabelMapper:
    """Maps a dataset's label values to 0 (real) / 1 (fake); ``None`` for a value it cannot place.

    A ``ClassLabel`` column is read through its names (a dataset whose class 0 is ``fake`` stays right).
    """

    def __init__(self, label_map: Optional[dict] = None, class_names: Optional[list] = None, where: str = "data"):
        self.table: Optional[dict] = None
        if label_map:
            table = {}
            for key, value in label_map.items():
                if value not in (0, 1) or isinstance(value, bool):
                    raise ValueError(f"{where}: label_map values must be 0 (real) or 1 (fake), got {key!r}: {value!r}")
                table[_norm_key(key)] = int(value)
            self.table = table
        self.class_names = list(class_names) if class_names else None
        if self.class_names and self.table is None:
            unknown = [n for n in self.class_names if _norm_key(n) not in KNOWN_LABELS]
            if unknown:
                raise ValueError(
                    f"{where}: label classes {self.class_names} include {unknown}, which are not real/fake names; "
                    "give label_map, e.g. label_map: {" + ", ".join(f"{n}: 0" for n in self.class_names[:2]) + "}"
                )

    def __call__(self, value: Any) -> Optional[int]:
        if value is None:
            return None
        if self.class_names is not None and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if not 0 <= int(value) < len(self.class_names):
                return None
            value = self.class_names[int(value)]
        key = _norm_key(value)
        table = self.table if self.table is not None else KNOWN_LABELS
        return table.get(key)


def _norm_key(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip().lower()


# -- sources -------------------------------------------------------------------------------------------
class IndexedSource:
    """A labelled dataset with random access: a scanned image folder or a ``save_to_disk`` folder.

    ``get(i) -> (image source for load_rgb, key)``; ``labels[i]`` is 0/1; ``key`` names the example
    (a path relative to the root, or the row number) in logs and seeds its augmentation.
    """

    def __init__(self, location: str, kind: str, labels: np.ndarray, paths: Optional[list] = None,
                 dataset=None, image_column: str = "image", root: Optional[Path] = None):
        self.location, self.kind = location, kind
        self.labels = labels
        self._paths, self._dataset, self._image_column = paths, dataset, image_column
        self._root = root

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, index: int):
        if self._paths is not None:
            path = self._paths[index]
            return path, os.path.relpath(path, self._root)
        value = self._dataset[int(index)][self._image_column]
        if isinstance(value, dict):
            value = value.get("bytes") or value.get("path")
        return value, f"row-{int(index)}"

    def class_counts(self) -> dict:
        return {"real": int((self.labels == 0).sum()), "fake": int((self.labels == 1).sum())}

    def describe(self) -> str:
        c = self.class_counts()
        return f"{self.location} ({self.kind}: {len(self)} images, {c['real']} real, {c['fake']} fake)"


class StreamSource:
    """A dataset read with ``streaming=True`` (Hub id or local data files): sharded, length maybe unknown."""

    def __init__(self, location: str, stream, options: DataOptions, mapper: LabelMapper,
                 num_examples: Optional[int] = None):
        self.location, self.stream, self.options, self.mapper = location, stream, options, mapper
        self.kind = "stream"
        self.num_examples = num_examples

    @property
    def num_shards(self) -> int:
        return self.stream.num_shards

    def describe(self) -> str:
        n = f"{self.num_examples} examples" if self.num_examples is not None else "length unknown"
        return f"{self.location} (stream: {self.num_shards} shards, {n})"


Source = Union[IndexedSource, StreamSource]


def open_source(location: str, options: Optional[DataOptions] = None, role: str = "train_data") -> Source:
    """Open ``location`` (local folder, ``save_to_disk`` folder, parquet folder or Hub id) and check it.

    Fails at once with a ``ValueError`` naming ``role`` and the path when it is missing, holds no image,
    or holds images without labels.
    """
    options = options or DataOptions()
    if not location or not str(location).strip():
        raise ValueError(f"{role}: empty location")
    path = Path(os.path.expanduser(str(location)))
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{role}: {path} is a file; give a folder of images, a saved dataset or a Hub dataset id")
        if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            return _open_saved(path, options, role)
        if _has_data_files(path):
            return _open_stream(str(path), options, role)
        return _open_folder(path, role)
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", str(location)) and not str(location).startswith("."):
        return _open_stream(str(location), options, role, hub=True)
    raise ValueError(f"{role}: no such folder: {path}")


def _has_data_files(path: Path) -> bool:
    for pattern in ("*", "data/*", "*/*"):
        for f in path.glob(pattern):
            if f.suffix.lower() in PARQUET_LIKE and f.is_file():
                return True
    return False


def _open_folder(root: Path, role: str) -> IndexedSource:
    examples, unlabeled = scan_labeled_folder(root)
    if not examples:
        if unlabeled:
            raise ValueError(
                f"{role}: {root} has {unlabeled} images but none inside a label folder; put real images under "
                "a '0_real' folder and fake ones under '1_fake' (at any depth), or GenImage's 'nature'/'ai'"
            )
        raise ValueError(f"{role}: {root} holds no image files (looked for .png, .jpg, .jpeg, .webp, ... at any depth)")
    if unlabeled:
        logger.warning("%s: %d image(s) under %s sit outside any 0_real/1_fake/nature/ai folder and are ignored",
                       role, unlabeled, root)
    labels = np.asarray([e.label for e in examples], dtype=np.int8)
    return IndexedSource(str(root), "folder", labels, paths=[e.path for e in examples], root=root)


def _open_saved(path: Path, options: DataOptions, role: str) -> IndexedSource:
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if options.split not in ds:
            raise ValueError(f"{role}: {path} has splits {sorted(ds)}, not {options.split!r} (set the split option)")
        ds = ds[options.split]
    _check_columns(ds.column_names, options, role, path)
    mapper = LabelMapper(options.label_map, _class_names(ds.features, options.label_column), f"{role} {path}")
    if isinstance(ds.features[options.image_column], datasets.Image):
        ds = ds.cast_column(options.image_column, datasets.Image(decode=False))
    mapped = (mapper(v) for v in ds[options.label_column])
    labels = np.asarray([-1 if m is None else m for m in mapped], dtype=np.int8)
    if len(labels) == 0:
        raise ValueError(f"{role}: {path} is an empty dataset")
    keep = np.flatnonzero(labels >= 0)
    if keep.size == 0:
        raise ValueError(f"{role}: {path}: no row of column {options.label_column!r} maps to real/fake; give label_map")
    if keep.size < len(labels):
        logger.warning("%s: %d row(s) of %s have a label that maps to neither real nor fake and are ignored",
                       role, len(labels) - keep.size, path)
        ds, labels = ds.select(keep), labels[keep]
    return IndexedSource(str(path), "saved", labels, dataset=ds, image_column=options.image_column)


def _open_stream(location: str, options: DataOptions, role: str, hub: bool = False) -> StreamSource:
    import datasets

    try:
        stream = datasets.load_dataset(location, split=options.split, streaming=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means "cannot read this source"
        what = "is not a local folder, and loading it as a Hub dataset failed" if hub else "could not be read as a dataset"
        raise ValueError(f"{role}: {location} {what}: {type(exc).__name__}: {exc}") from exc
    features = stream.features
    columns = list(features) if features is not None else None
    if columns is not None:
        _check_columns(columns, options, role, location)
    mapper = LabelMapper(options.label_map, _class_names(features, options.label_column), f"{role} {location}")
    if features is not None and isinstance(features.get(options.image_column), datasets.Image):
        stream = stream.cast_column(options.image_column, datasets.Image(decode=False))
    if columns is not None:
        stream = stream.select_columns([options.image_column, options.label_column])
    num_examples = None
    splits = getattr(stream.info, "splits", None)
    if splits and options.split in splits and splits[options.split].num_examples:
        num_examples = int(splits[options.split].num_examples)
    return StreamSource(location, stream, options, mapper, num_examples)


def _check_columns(columns, options: DataOptions, role: str, where) -> None:
    missing = [c for c in (options.image_column, options.label_column) if c not in columns]
    if missing:
        raise ValueError(
            f"{role}: {where} has columns {list(columns)}; the configured column(s) {missing} are missing "
            "(set image_column / label_column)"
        )


def _class_names(features, column: str) -> Optional[list]:
    import datasets

    feature = features.get(column) if features is not None else None
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


# -- planning --------------------------------------------------------------------------------------------
def epoch_rng(seed: int, epoch: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & (2**63 - 1), int(epoch), *map(int, extra)])


def plan_train_epoch(num_examples: int, world_size: int, rank: int, batch_size: int, seed: int, epoch: int) -> list:
    """This process's batches (arrays of example indices) for ``epoch``.

    A seeded permutation, padded by wrapping to ``ceil(n / world) * world`` and dealt round-robin: all
    processes get ``ceil(n / world)`` examples, together every example at least once (exactly once when
    ``world`` divides ``n``). The last batch may be short (never dropped).
    """
    order = epoch_rng(seed, epoch).permutation(num_examples)
    per_rank = math.ceil(num_examples / world_size)
    mine = np.resize(order, per_rank * world_size)[rank::world_size]
    return [mine[i:i + batch_size] for i in range(0, per_rank, batch_size)]


def plan_eval(num_examples: int, world_size: int, rank: int, batch_size: int) -> list:
    """Validation batches: every example exactly once over all processes, no padding, in order."""
    mine = np.arange(num_examples)[rank::world_size]
    return [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)]


def batches_per_epoch(num_examples: int, world_size: int, batch_size: int) -> int:
    return math.ceil(math.ceil(num_examples / world_size) / batch_size)


# -- generators (run inside DataLoader workers) ---------------------------------------------------------
@dataclass
class _Job:
    """What a generator needs besides its shards (passed whole to every shard by ``from_generator``)."""

    source: Any
    transform: Any
    seed: int
    epoch: int
    max_pixels: int
    replace_bad: bool = False


def _new_counts() -> np.ndarray:
    return np.zeros(len(SKIP_REASONS), dtype=np.int64)


def _with_counts(items: Iterator) -> Iterator[dict]:
    """Attach skip counts to examples. ``items`` yields examples (dicts) and failures ``(reason, key)``.

    Counts of failures go to the next example; one example is held back so that trailing failures reach
    the last one. A shard with failures and no readable image logs them (they cannot reach the loop).
    """
    counts, files, held = _new_counts(), [], None
    for item in items:
        if isinstance(item, tuple):
            reason, key = item
            counts[_REASON_INDEX[reason]] += 1
            files.append(f"{key}\t{reason}")
            continue
        item["skipped"], item["skipped_files"] = counts, files
        counts, files = _new_counts(), []
        if held is not None:
            yield held
        held = item
    if held is not None:
        held["skipped"] = held["skipped"] + counts
        held["skipped_files"] = held["skipped_files"] + files
        yield held
    elif files:
        logger.warning("a data shard had no readable image; skipped: %s", "; ".join(files[:20]))


def _decode(src, key: str, max_pixels: int):
    if src is None:
        return None, ("missing", key)
    try:
        return load_rgb(src, max_pixels=max_pixels), None
    except ImageError as err:
        return None, (err.reason if err.reason in _REASON_INDEX else "corrupt", key)


def _indexed_items(batches: list, job: _Job) -> Iterator:
    from .augment import example_rng

    source, n = job.source, len(job.source)
    for batch in batches:
        for index in batch:
            current, attempt = int(index), 0
            while True:
                src, key = source.get(current)
                image, failure = _decode(src, key, job.max_pixels)
                if image is not None:
                    break
                yield failure
                if not job.replace_bad:
                    break
                attempt += 1
                if attempt > MAX_REPLACEMENTS:
                    raise RuntimeError(
                        f"{source.location}: {MAX_REPLACEMENTS} unreadable images in a row while filling a batch "
                        f"(last: {key}); is the dataset readable?"
                    )
                current = int(epoch_rng(job.seed, job.epoch, int(index), attempt, 7).integers(n))
            if image is None:
                continue
            pixels = job.transform(image, example_rng(job.seed, job.epoch, key))
            yield {"pixel_values": pixels, "label": int(source.labels[current]), "key": key}


def _indexed_examples(batches: list, job: _Job) -> Iterator[dict]:
    yield from _with_counts(_indexed_items(batches, job))


@dataclass
class _StreamJob(_Job):
    stride: Optional[tuple] = None  # (world, rank): keep every world-th record of each shard
    shuffle_buffer: int = 0
    rank: int = 0


def _stream_records(shards: list, job: _StreamJob) -> Iterator[tuple]:
    src = job.source
    for shard in shards:
        sub = src.stream.shard(num_shards=src.num_shards, index=int(shard))
        position = 0
        for chunk in sub.iter(batch_size=32):
            columns = list(chunk)
            for row in zip(*(chunk[c] for c in columns)):
                record = dict(zip(columns, row))
                if job.stride is None or position % job.stride[0] == job.stride[1]:
                    yield int(shard), position, record
                position += 1


def _shuffled(records: Iterator, size: int, rng: np.random.Generator) -> Iterator:
    if size <= 1:
        yield from records
        return
    buffer = []
    for record in records:
        if len(buffer) < size:
            buffer.append(record)
            continue
        j = int(rng.integers(size))
        yield buffer[j]
        buffer[j] = record
    for j in rng.permutation(len(buffer)):
        yield buffer[j]


def _stream_items(shards: list, job: _StreamJob) -> Iterator:
    from .augment import example_rng
    import hashlib

    src, opts = job.source, job.source.options
    rng = epoch_rng(job.seed, job.epoch, job.rank, *(int(s) for s in shards[:1]), 11)
    for shard, position, record in _shuffled(_stream_records(shards, job), job.shuffle_buffer, rng):
        value = record[opts.image_column]
        if isinstance(value, dict):
            value = value.get("bytes") or value.get("path")
        key = f"shard{shard}-row{position}"
        label = src.mapper(record[opts.label_column])
        if label is None:
            yield ("no-label", key)
            continue
        image, failure = _decode(value, key, job.max_pixels)
        if image is None:
            yield failure
            continue
        # Seed the augmentation by content, so it does not depend on the worker that read the record.
        seed_key = hashlib.blake2b(value, digest_size=16).hexdigest() if isinstance(value, bytes) else key
        pixels = job.transform(image, example_rng(job.seed, job.epoch, seed_key))
        yield {"pixel_values": pixels, "label": label, "key": key}


def _stream_examples(shards: list, job: _StreamJob) -> Iterator[dict]:
    yield from _with_counts(_stream_items(shards, job))


def collate_examples(records: list) -> dict:
    """Stack pixels and labels; sum the skip counts; keep keys and skipped file names as lists."""
    return {
        "pixel_values": torch.from_numpy(np.stack([r["pixel_values"] for r in records])),
        "labels": torch.tensor([r["label"] for r in records], dtype=torch.long),
        "keys": [r["key"] for r in records],
        "skipped": torch.from_numpy(np.sum([r["skipped"] for r in records], axis=0)),
        "skipped_files": [f for r in records for f in r["skipped_files"]],
    }


# -- the per-process view ----------------------------------------------------------------------------------
class EpochData:
    """One process's share of a source, epoch by epoch, as DataLoaders over ``from_generator`` datasets.

    ``batches(epoch, start=0)`` yields collated batches of this process for ``epoch``, beginning at batch
    ``start``. ``num_batches`` is the per-process batch count of an epoch (the same on every process), or
    None for a stream of unknown length.
    """

    def __init__(self, source: Source, transform, batch_size: int, *, seed: int, world_size: int = 1, rank: int = 0,
                 num_workers: int = 0, train: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS,
                 shuffle_buffer: int = 0, pin_memory: bool = False):
        self.source, self.transform, self.batch_size = source, transform, int(batch_size)
        self.seed, self.world_size, self.rank = int(seed), int(world_size), int(rank)
        self.num_workers, self.train, self.max_pixels = int(num_workers), train, int(max_pixels)
        self.shuffle_buffer = int(shuffle_buffer)
        self.pin_memory = bool(pin_memory)

    @property
    def num_batches(self) -> Optional[int]:
        if isinstance(self.source, IndexedSource):
            if self.train:
                return batches_per_epoch(len(self.source), self.world_size, self.batch_size)
            return len(plan_eval(len(self.source), self.world_size, self.rank, self.batch_size))
        if self.source.num_examples is not None and self.train:
            return batches_per_epoch(self.source.num_examples, self.world_size, self.batch_size)
        return None

    @property
    def length_is_exact(self) -> bool:
        return isinstance(self.source, IndexedSource)

    def dataset(self, epoch: int, start: int = 0):
        """The ``datasets.IterableDataset`` of this process for ``epoch`` and its number of shards."""
        from datasets import IterableDataset

        if isinstance(self.source, IndexedSource):
            if self.train:
                plan = plan_train_epoch(len(self.source), self.world_size, self.rank, self.batch_size, self.seed, epoch)
            else:
                plan = plan_eval(len(self.source), self.world_size, self.rank, self.batch_size)
            shards = [[int(i) for i in batch] for batch in plan[start:]]
            job = _Job(self.source, self.transform, self.seed, epoch, self.max_pixels, replace_bad=self.train)
            fn = _indexed_examples
            kwargs = {"batches": shards, "job": job}
        else:
            n = self.source.num_shards
            order = epoch_rng(self.seed, epoch).permutation(n) if self.train else np.arange(n)
            if n % self.world_size == 0:
                shards, stride = [int(s) for s in order[self.rank::self.world_size]], None
            else:
                shards, stride = [int(s) for s in order], (self.world_size, self.rank)
            job = _StreamJob(self.source, self.transform, self.seed, epoch, self.max_pixels, stride=stride,
                             shuffle_buffer=self.shuffle_buffer if self.train else 0, rank=self.rank)
            fn = _stream_examples
            kwargs = {"shards": shards, "job": job}
        key = "batches" if "batches" in kwargs else "shards"
        if not kwargs[key]:
            return None, 0
        return IterableDataset.from_generator(fn, gen_kwargs=kwargs), len(kwargs[key])

    def batches(self, epoch: int, start: int = 0) -> Iterator[dict]:
        indexed = isinstance(self.source, IndexedSource)
        dataset, num_shards = self.dataset(epoch, start if indexed else 0)
        if dataset is None:
            return
        loader = DataLoader(
            dataset,
            batch_size=self.batch_size,
            num_workers=min(self.num_workers, num_shards),
            collate_fn=collate_examples,
            pin_memory=self.pin_memory,
        )
        for i, batch in enumerate(loader):
            if not indexed and i < start:
                continue  # a stream cannot seek: re-read and drop the batches done before the resume
            yield batch


def skip_summary(counts) -> str:
    """``"corrupt=2, empty=1"`` (reasons with a count), or ``"none"``."""
    counts = [int(c) for c in counts]
    parts = [f"{r}={c}" for r, c in zip(SKIP_REASONS, counts) if c]
    return ", ".join(parts) if parts else "none"


__all__ = [
    "DataOptions",
    "EpochData",
    "IndexedSource",
    "LabelMapper",
    "SKIP_REASONS",
    "StreamSource",
    "batches_per_epoch",
    "collate_examples",
    "open_source",
    "plan_eval",
    "plan_train_epoch",
    "skip_summary",
]
