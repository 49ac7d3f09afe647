"""Training step: HyperDet (frozen backbone, prefix blocks without autograd, bf16 autocast; with and without
its frozen Linear/Conv weights stored in bf16, as training does by default) vs a naive version that keeps
autograd through the whole backbone (backbone weights left requiring grad).

    python benchmarks/bench_train_step.py --size vitl14 --batch 1 --repeats 2

Each variant runs in its own subprocess so its peak memory is its own: the process peak (peak RSS minus the
RSS before the model was built), the weights' bytes, and the difference (what a step needs: activations,
gradients, optimizer state). Last line: the ratios (target: peak - weights <= 0.5x the naive one).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

from common import SIZES, build, table

from hyperdet_hf.training import cast_frozen_weights


VARIANTS = ("hyperdet", "hyperdet-bf16-backbone", "naive")


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_variant(size: str, batch: int, repeats: int, variant: str) -> dict:
    before_model = rss_mib()
    model = build(size).train()
    body = model.hyperdet
    naive = variant == "naive"
    if variant == "hyperdet-bf16-backbone":
        # what training does by default (cast_frozen_weights): autocast has nothing to re-cast on every call
        cast_frozen_weights(model, torch.bfloat16)
    if naive:
        body.prefix_without_autograd = False
        body.backbone.requires_grad_(True)  # autograd records (and back-propagates) every block
    params = [p for n, p in model.named_parameters() if "hyper_lora" in n or "classifier" in n]
    opt = torch.optim.AdamW(params, lr=1e-4)
    s = SIZES[size]["image_size"]
    x, y = torch.randn(batch, 3, s, s), torch.tensor([i % 2 for i in range(batch)])

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(pixel_values=x, labels=y).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if naive:
            for p in body.backbone.parameters():
                p.grad = None

    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]) / 2**20
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before_model
    # The process peak counts what the weights left behind, as a real run does (freed memory is reused:
    # runtime.keep_freed_memory); peak - weights is what the step itself needs (activations, grads, AdamW).
    return {"seconds": sorted(times[1:])[len(times[1:]) // 2], "peak_mib": peak, "weights_mib": weights,
            "step_mib": peak - weights}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="vitl14")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.variant:
        print(json.dumps(run_variant(args.size, args.batch, args.repeats, args.variant)))
        return
    results = {}
    for variant in VARIANTS:
        out = subprocess.run(
            [sys.executable, __file__, "--size", args.size, "--batch", str(args.batch), "--repeats", str(args.repeats),
             "--variant", variant],
            capture_output=True, text=True, check=True,
        )
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    rows = [[v, f"{r['seconds']:.3f}", f"{r['peak_mib']:.0f}", f"{r['weights_mib']:.0f}", f"{r['step_mib']:.0f}"]
            for v, r in results.items()]
    print(f"size={args.size} batch={args.batch} (x6 views) bf16 autocast, AdamW, repeats={args.repeats}")
    print(table(rows, ["variant", "s / step (median)", "process peak (MiB)", "weights (MiB)", "peak - weights (MiB)"]))
    h, b, n = results["hyperdet"], results["hyperdet-bf16-backbone"], results["naive"]
    print(f"RATIOS peak-weights hyperdet/naive={h['step_mib'] / max(n['step_mib'], 1e-9):.2f}, "
          f"bf16-backbone/naive={b['step_mib'] / max(n['step_mib'], 1e-9):.2f} (target <= 0.5); "
          f"process peak hyperdet/naive={h['peak_mib'] / n['peak_mib']:.2f}, "
          f"bf16-backbone/naive={b['peak_mib'] / n['peak_mib']:.2f}; "
          f"step time hyperdet/naive={h['seconds'] / n['seconds']:.2f}, bf16-backbone/naive={b['seconds'] / n['seconds']:.2f}, "
          f"bf16-backbone/hyperdet={b['seconds'] / h['seconds']:.2f}")

if __name__ == "__main__":
    main()
