"""Data pipeline: decoded and augmented images/s per worker, so training is never input-bound.

    python benchmarks/bench_data.py --size 256 --images 128

Builds real photo crops (PNG) of the given size, then measures in one process, side by side:
decoding only (`load_rgb`), decoding + the train transform at crop 224 (random crop, flip, blur p=0.1,
JPEG p=0.1, CLIP normalisation), and the whole training input path (`EpochData`: a `datasets`
IterableDataset from_generator + DataLoader with 0 workers, i.e. one worker's rate).
Last line: the pipeline's rate relative to decoding alone, and to what a ViT-L/14 train step consumes
(--step_images_per_s, default from bench_train_step on this machine: batch 1 per ~5 s).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import table
from hyperdet_hf.augment import AugmentConfig, TrainTransform, example_rng
from hyperdet_hf.data import EpochData, open_source
from hyperdet_hf.image_io import load_rgb
from hyperdet_hf.proxy_benchmark import build_proxy_benchmark


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="side of the image files")
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--images", type=int, default=128, help="files in the folder (half real, half fake)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--step_images_per_s", type=float, default=0.2,
                    help="images/s a training step consumes (ViT-L/14 bf16 autocast on this CPU: batch 1 per ~5 s)")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp()) / "data"
    per_class = args.images // 2
    build_proxy_benchmark(root, size=args.size, train_per_class=per_class, val_per_class=0, test_per_class=0,
                          seen=("nn_conv",), families=("nn_conv",))
    files = sorted((root / "train").rglob("*.png"))
    transform = TrainTransform(args.crop, AugmentConfig.from_dict({"blur_prob": 0.1, "jpeg_prob": 0.1}))

    def rate(fn):
        start = time.perf_counter()
        n = fn()
        return n / (time.perf_counter() - start)

    def decode():
        for f in files:
            load_rgb(f)
        return len(files)

    def decode_augment():
        for i, f in enumerate(files):
            transform(load_rgb(f), example_rng(0, 0, str(i)))
        return len(files)

    def pipeline():
        data = EpochData(open_source(str(root / "train")), transform, args.batch, seed=0, num_workers=0)
        return sum(len(b["labels"]) for b in data.batches(epoch=0))

    decode()  # warm caches
    rates = {"decode": rate(decode), "decode + train transform": rate(decode_augment),
             "EpochData (datasets stream + DataLoader)": rate(pipeline)}
    rows = [[k, f"{v:.1f}"] for k, v in rates.items()]
    print(f"files={len(files)} of {args.size}x{args.size} PNG, crop {args.crop}, batch {args.batch}, 1 worker")
    print(table(rows, ["stage", "images/s per worker"]))
    full = rates["EpochData (datasets stream + DataLoader)"]
    print(f"RATIOS pipeline/decode={full / rates['decode']:.2f} "
          f"pipeline/train-step-demand={full / args.step_images_per_s:.0f}x")


if __name__ == "__main__":
    main()
