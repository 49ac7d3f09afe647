"""Training data: sources and their start-time checks, sharding over processes and workers, exact resume
positions, bad files skipped and counted, Hub-style streams (a local parquet dataset written by `datasets`)."""

import numpy as np
import pytest
import torch
from PIL import Image

from hyperdet_hf.augment import AugmentConfig, EvalTransform, TrainTransform
from hyperdet_hf.data import (
    SKIP_REASONS,
    EpochData,
    IndexedSource,
    LabelMapper,
    StreamSource,
    open_source,
    plan_eval,
    plan_train_epoch,
)
from hyperdet_hf.toy_data import make_toy_dataset, toy_image

NO_AUG = AugmentConfig(blur_prob=0.0, jpeg_prob=0.0)

# Files every loader meets sooner or later; those that decode must be converted, the rest skipped by reason.
BAD_FILES = {"zero.png": "empty", "truncated.png": "corrupt", "text.png": "not-an-image", "huge.png": "too-large"}
ODD_FILES = ("cmyk.jpg", "gray16.png", "palette.png", "gray.png", "rgba.png", "animated.gif")


def write_odd_files(folder, rng_seed=0, huge_side=80):
    """Write BAD_FILES and ODD_FILES into ``folder`` (a labelled folder); returns their names."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(rng_seed)
    arr = toy_image(rng, 1, 36, 36)
    (folder / "zero.png").write_bytes(b"")
    Image.fromarray(arr).save(folder / "truncated.png")
    data = (folder / "truncated.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "text.png").write_bytes(b"this is not an image\n" * 10)
    Image.fromarray(toy_image(rng, 1, huge_side, huge_side)).save(folder / "huge.png")
    Image.fromarray(arr).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    Image.fromarray(arr[..., 0].astype(np.uint16) * 257).save(folder / "gray16.png")
    Image.fromarray(arr).convert("P").save(folder / "palette.png")
    Image.fromarray(arr[..., 1]).save(folder / "gray.png")
    Image.fromarray(np.dstack([arr, np.full(arr.shape[:2], 128, np.uint8)]), "RGBA").save(folder / "rgba.png")
    frames = [Image.fromarray(arr), Image.fromarray(255 - arr)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    return sorted(BAD_FILES) + list(ODD_FILES)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "data", n_per_class=24, size=36, size_jitter=4, seed=1)


def _keys(batches):
    return [k for b in batches for k in b["keys"]]


# -- sources and start-time checks ---------------------------------------------------------------------------
def test_folder_layouts_label_from_the_nearest_folder(tmp_path):
    make_toy_dataset(tmp_path / "cnn", n_per_class=3, size=8, classes=("car", "cat"))
    deep = tmp_path / "cnn" / "cat" / "1_fake" / "sub" / "deeper"
    deep.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(deep / "x.png")
    src = open_source(str(tmp_path / "cnn"))
    assert isinstance(src, IndexedSource) and len(src) == 7
    by_key = {src.get(i)[1]: int(src.labels[i]) for i in range(len(src))}
    assert by_key["cat/1_fake/sub/deeper/x.png"] == 1
    assert sum(v == 0 for v in by_key.values()) == 3 and all(("0_real" in k) == (v == 0) for k, v in by_key.items())
    make_toy_dataset(tmp_path / "gen", n_per_class=2, size=8, layout="genimage")
    gen = open_source(str(tmp_path / "gen"))
    assert gen.class_counts() == {"real": 2, "fake": 2}


def test_missing_empty_labelless_sources_fail_naming_the_path(tmp_path):
    with pytest.raises(ValueError, match=f"train_data: no such folder: {tmp_path / 'nowhere'}"):
        open_source(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=f"{tmp_path / 'empty'} holds no image files"):
        open_source(str(tmp_path / "empty"))
    (tmp_path / "flat").mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "flat" / f"{i}.png")
    with pytest.raises(ValueError, match=f"val_data: {tmp_path / 'flat'} has 3 images but none inside a label folder"):
        open_source(str(tmp_path / "flat"), role="val_data")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file"):
        open_source(str(tmp_path / "file.png"))


# -- planning: disjoint, complete, equal ------------------------------------------------------------------------
@pytest.mark.parametrize("n, world, batch", [(64, 2, 8), (63, 2, 8), (50, 3, 4), (10, 1, 3)])
def test_each_epoch_is_dealt_disjointly_and_completely(n, world, batch):
    for epoch in (0, 1):
        plans = [plan_train_epoch(n, world, r, batch, seed=5, epoch=epoch) for r in range(world)]
        per_rank = [np.concatenate(p) for p in plans]
        assert len({len(p) for p in plans}) == 1  # same number of batches everywhere (no collective hangs)
        assert len({len(x) for x in per_rank}) == 1
        everything = np.concatenate(per_rank)
        assert set(everything.tolist()) == set(range(n))  # every example at least once
        if n % world == 0:
            assert len(everything) == n  # ... and exactly once
        else:
            assert len(everything) - n < world  # padding only to even the processes out
    e0 = np.concatenate(plan_train_epoch(n, world, 0, batch, seed=5, epoch=0))
    e1 = np.concatenate(plan_train_epoch(n, world, 0, batch, seed=5, epoch=1))
    assert not np.array_equal(e0, e1)  # reshuffled every epoch
    assert np.array_equal(e0, np.concatenate(plan_train_epoch(n, world, 0, batch, seed=5, epoch=0)))
    evals = [np.concatenate(plan_eval(n, world, r, batch)) for r in range(world)]
    assert sorted(np.concatenate(evals).tolist()) == list(range(n))


def test_batches_do_not_depend_on_workers_and_resume_exactly(toy):
    src = open_source(str(toy))

    def data(workers, rank=0, world=1):
        return EpochData(src, TrainTransform(32), 5, seed=3, world_size=world, rank=rank, num_workers=workers)

    full = list(data(0).batches(epoch=1))
    assert [len(b["keys"]) for b in full] == [5] * 9 + [3]
    with_workers = list(data(2).batches(epoch=1))
    assert _keys(full) == _keys(with_workers)
    for a, b in zip(full, with_workers):
        assert torch.equal(a["pixel_values"], b["pixel_values"]) and torch.equal(a["labels"], b["labels"])
    resumed = list(data(2).batches(epoch=1, start=4))
    assert _keys(resumed) == _keys(full[4:])
    assert torch.equal(resumed[0]["pixel_values"], full[4]["pixel_values"])
    # two processes: disjoint halves of the epoch, together all of it
    halves = [_keys(data(1, rank=r, world=2).batches(epoch=1)) for r in range(2)]
    assert not set(halves[0]) & set(halves[1]) and sorted(halves[0] + halves[1]) == sorted(_keys(full))
    # labels follow the folders
    for batch in full:
        for key, label in zip(batch["keys"], batch["labels"].tolist()):
            assert label == (1 if "/1_fake/" in key else 0)


def test_bad_files_are_skipped_and_counted_odd_ones_converted(tmp_path):
    root = make_toy_dataset(tmp_path / "data", n_per_class=6, size=36, seed=2)
    names = write_odd_files(root / "car" / "1_fake")
    src = open_source(str(root))
    assert len(src) == 12 + len(names)
    # validation: bad files are dropped and each is counted once, by reason
    val = list(EpochData(src, EvalTransform(32), 4, seed=0, train=False, max_pixels=3000).batches(0))
    counts = sum(b["skipped"] for b in val)
    assert dict(zip(SKIP_REASONS, counts.tolist())) == {
        "missing": 0, "empty": 1, "not-an-image": 1, "too-large": 1, "corrupt": 1, "no-label": 0}
    skipped = {line.split("\t")[0].rsplit("/", 1)[-1]: line.split("\t")[1] for b in val for line in b["skipped_files"]}
    assert skipped == BAD_FILES
    seen = {k.rsplit("/", 1)[-1] for k in _keys(val)}
    assert set(ODD_FILES) <= seen and not seen & set(BAD_FILES)
    for batch in val:
        assert torch.isfinite(batch["pixel_values"]).all() and batch["pixel_values"].shape[1:] == (3, 32, 32)
    # training: a bad file's slot is refilled, so every batch keeps its size and every bad read is counted
    train = list(EpochData(src, TrainTransform(32, NO_AUG), 4, seed=0, max_pixels=3000).batches(0))
    assert [len(b["keys"]) for b in train] == [4] * (len(src) // 4) + ([len(src) % 4] if len(src) % 4 else [])
    counts = sum(b["skipped"] for b in train)
    bad_reads = [line for b in train for line in b["skipped_files"]]
    assert int(counts.sum()) == len(bad_reads) >= 4
    assert {line.split("\t")[0].rsplit("/", 1)[-1] for line in bad_reads} >= set(BAD_FILES)
    assert not {k.rsplit("/", 1)[-1] for k in _keys(train)} & set(BAD_FILES)


# -- datasets sources: a Hub-style parquet folder (streamed) and a save_to_disk folder ------------------------------
def _hub_style_dataset(n=12, seed=0):
    import datasets

    rng = np.random.default_rng(seed)
    labels = [i % 2 for i in range(n)]
    images = [Image.fromarray(toy_image(rng, y, 36, 36)) for y in labels]
    # ClassLabel with fake FIRST: labels must be read through the names, not the integer codes
    features = datasets.Features({"img": datasets.Image(), "kind": datasets.ClassLabel(names=["fake", "real"])})
    return datasets.Dataset.from_dict({"img": images, "kind": [1 - y for y in labels]}, features=features), labels


def test_streamed_dataset_is_sharded_over_processes(tmp_path):
    ds, labels = _hub_style_dataset()
    (tmp_path / "hub" / "data").mkdir(parents=True)
    for i in range(2):
        ds.shard(2, i, contiguous=True).to_parquet(str(tmp_path / "hub" / "data" / f"train-{i:05d}-of-00002.parquet"))
    with pytest.raises(ValueError, match=r"configured column\(s\) \['image', 'label'\] are missing"):
        open_source(str(tmp_path / "hub"))
    from hyperdet_hf.data import DataOptions

    src = open_source(str(tmp_path / "hub"), DataOptions(image_column="img", label_column="kind"))
    assert isinstance(src, StreamSource) and src.num_shards == 2
    per_rank = []
    for rank in range(2):
        data = EpochData(src, TrainTransform(32, NO_AUG), 4, seed=0, world_size=2, rank=rank, num_workers=1,
                         shuffle_buffer=4)
        batches = list(data.batches(0))
        per_rank.append(_keys(batches))
        for b in batches:
            for key, y in zip(b["keys"], b["labels"].tolist()):
                shard, row = (int(x) for x in key.replace("shard", "").split("-row"))
                assert y == labels[shard * 6 + row]  # the real/fake meaning survives the reversed ClassLabel
    assert not set(per_rank[0]) & set(per_rank[1])
    assert len(per_rank[0]) + len(per_rank[1]) == 12
    # resuming a stream re-reads and drops the batches already done
    data = EpochData(src, TrainTransform(32, NO_AUG), 4, seed=0, shuffle_buffer=4)
    assert _keys(data.batches(0, start=1)) == _keys(data.batches(0))[4:]


def test_stream_with_odd_numbers_of_shards_is_split_by_records(tmp_path):
    ds, _ = _hub_style_dataset(n=9)
    (tmp_path / "one").mkdir()
    ds.to_parquet(str(tmp_path / "one" / "train.parquet"))  # one shard, two processes
    from hyperdet_hf.data import DataOptions

    src = open_source(str(tmp_path / "one"), DataOptions(image_column="img", label_column="kind"))
    parts = [_keys(EpochData(src, EvalTransform(32), 4, seed=0, world_size=2, rank=r, train=False).batches(0))
             for r in range(2)]
    assert len(parts[0]) == 5 and len(parts[1]) == 4 and not set(parts[0]) & set(parts[1])


def test_saved_dataset_is_random_access(tmp_path):
    ds, labels = _hub_style_dataset(n=10)
    ds.save_to_disk(str(tmp_path / "saved"))
    from hyperdet_hf.data import DataOptions

    src = open_source(str(tmp_path / "saved"), DataOptions(image_column="img", label_column="kind"))
    assert isinstance(src, IndexedSource) and src.labels.tolist() == labels
    batches = list(EpochData(src, TrainTransform(32, NO_AUG), 3, seed=0).batches(0))
    assert sorted(_keys(batches)) == sorted(f"row-{i}" for i in range(10))


def test_label_mapper():
    assert [LabelMapper()(v) for v in (0, 1, True, "fake", "REAL", "nature", "ai", "cat", None)] == \
        [0, 1, 1, 1, 0, 0, 1, None, None]
    assert LabelMapper(class_names=["fake", "real"])(0) == 1
    assert LabelMapper({"photo": 0, "sd": 1})("sd") == 1
    with pytest.raises(ValueError, match="label_map"):
        LabelMapper(class_names=["cat", "dog"])


def test_an_unreachable_hub_id_fails_naming_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="train_data: someone/progan-train is not a local folder, and loading it as a "
                                         "Hub dataset failed"):
        open_source("someone/progan-train")
