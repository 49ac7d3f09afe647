"""Allocator: HyperDet bf16 inference with ``keep_freed_memory`` (what the CLI, training and the other
benchmarks run with) vs glibc's default malloc, which returns every large freed block to the kernel, so
each forward page-faults its activations in again.

    python benchmarks/bench_malloc.py --size vitl14 --batch 4 --repeats 3

malloc settings are per process and cannot be undone exactly, so each setting runs in its own process
(the two are run alternately ``--rounds`` times and each setting's median is reported). Last line: the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import torch

from common import KEEPS_FREED_MEMORY, SIZES, build, table, timed_interleaved

SETTINGS = {"keep_freed_memory": "1", "glibc default": "0"}


def run_child(size: str, batch: int, repeats: int) -> dict:
    model = build(size).to(torch.bfloat16)
    s = SIZES[size]["image_size"]
    x = torch.randn(batch, 3, s, s)
    with torch.inference_mode():
        secs = timed_interleaved({"hyperdet": lambda: model(pixel_values=x)}, repeats=repeats)["hyperdet"]
    return {"seconds": secs, "kept": KEEPS_FREED_MEMORY}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="vitl14")
    ap.add_argument("--batch", type=int, default=4, help="images per call (6x that many views)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1, help="alternations of the two processes")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args.size, args.batch, args.repeats)))
        return
    samples = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, switch in SETTINGS.items():
            out = subprocess.run(
                [sys.executable, __file__, "--child", "--size", args.size, "--batch", str(args.batch),
                 "--repeats", str(args.repeats)],
                capture_output=True, text=True, check=True, env={**os.environ, "HYPERDET_KEEP_FREED_MEMORY": switch},
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            assert result["kept"] == (switch == "1"), result
            samples[name].append(result["seconds"])
    secs = {name: statistics.median(v) for name, v in samples.items()}
    print(f"size={args.size} batch={args.batch} views/call={6 * args.batch} bf16 weights, repeats={args.repeats} "
          f"rounds={args.rounds}")
    print(table([[n, f"{t * 1000:.1f}", f"{args.batch / t:.2f}"] for n, t in secs.items()],
                ["malloc", "ms / call (median)", "images/s"]))
    print(f"RATIOS keep_freed_memory/glibc default time={secs['keep_freed_memory'] / secs['glibc default']:.2f}")


if __name__ == "__main__":
    main()
