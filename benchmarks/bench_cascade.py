"""Cascade fusion (Algorithm 2) vs mean fusion: views computed per image and time per image.

    python benchmarks/bench_cascade.py --model outputs/demo/hyperdet/final --data outputs/demo/data/test

Without --model a tiny random-weight detector is used (its cascade exits wherever its random logits
fall). Without --data the proxy benchmark's test split is built in a temporary folder. The cascade
runs views 1 and 6 for the whole batch, then each further view only on the images still at or above
the threshold (shrinking sub-batches), so it saves compute only when images exit early.
"""

from __future__ import annotations

import argparse
import copy
import tempfile

import torch

from common import build, table, timed_interleaved
from hyperdet_hf.image_io import load_rgb
from hyperdet_hf.inference import load_detector
from hyperdet_hf.layouts import scan_benchmark
from hyperdet_hf.processing import default_image_processor
from hyperdet_hf.proxy_benchmark import build_proxy_benchmark


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="saved detector folder (default: tiny random)")
    ap.add_argument("--data", help="benchmark root with <generator>/{0_real,1_fake} (default: proxy test split)")
    ap.add_argument("--threshold", type=float, help="cascade threshold (default: the model's)")
    ap.add_argument("--max_images", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="auto")
    args = ap.parse_args(argv)

    if args.model:
        model, processor = load_detector(args.model, dtype=args.dtype)
    else:
        model = build("tiny").to(torch.bfloat16 if args.dtype != "float32" else torch.float32)
        processor = default_image_processor(crop_size=model.config.vision_config.image_size)
    data = args.data
    if data is None:
        data = tempfile.mkdtemp() + "/proxy"
        build_proxy_benchmark(data, seed=0, size=72, train_per_class=0, val_per_class=0, test_per_class=8, seen=())
        data += "/test"
    examples = [e for exs in scan_benchmark(data).values() for e in exs][: args.max_images]
    images = [load_rgb(e.path) for e in examples]
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]

    mean_model = copy.deepcopy(model)
    mean_model.config.fusion = "mean"
    cascade_model = model
    cascade_model.config.fusion = "cascade"
    if args.threshold is not None:
        cascade_model.config.cascade_threshold = args.threshold
    counts = {"mean": [], "cascade": []}
    for name, m in (("mean", mean_model), ("cascade", cascade_model)):
        m.hyperdet.backbone.vision_model.embeddings.register_forward_hook(
            lambda mod, inp, out, key=name: counts[key].append(out.shape[0])
        )

    def run(m):
        def go():
            with torch.inference_mode():
                return [m(pixel_values=pixels[i : i + args.batch]) for i in range(0, len(pixels), args.batch)]

        return go

    secs = timed_interleaved({"mean": run(mean_model), "cascade": run(cascade_model)}, repeats=args.repeats)
    calls = args.repeats + 1  # warm-up included in the counts
    n = len(pixels)
    rows = []
    for name in ("mean", "cascade"):
        views = sum(counts[name]) / calls / n
        rows.append([name, f"{views:.2f}", f"{secs[name] / n * 1000:.2f}"])
    print(f"images={n} threshold={cascade_model.config.cascade_threshold} dtype={next(model.parameters()).dtype} data={data}")
    print(table(rows, ["fusion", "views computed / image", "ms / image (median)"]))
    v_mean, v_casc = (sum(counts[k]) / calls / n for k in ("mean", "cascade"))
    print(f"RATIOS cascade/mean views={v_casc / v_mean:.2f} time={secs['cascade'] / secs['mean']:.2f}")


if __name__ == "__main__":
    main()
