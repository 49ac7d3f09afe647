"""Inference: HyperDet vs the plain CLIP forward over the same six views, fp32 vs bf16, and the floor.

    python benchmarks/bench_inference.py --size vitl14 --batch 2 --repeats 3

Prints a table and, last, a line of ratios measured side by side in this run:
  hyperdet/plain (same dtype; target <= 1.10), fp32/bf16 speed-up (target >= 3), HyperDet bf16 time as a
  multiple of the floor (6 x backbone FLOPs / measured bf16 matmul rate).
"""

from __future__ import annotations

import argparse
import copy

import torch

from common import SIZES, build, matmul_tflops, table, timed_interleaved, vit_flops


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="vitl14")
    ap.add_argument("--batch", type=int, default=2, help="images per call (6x that many views)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--breakdown", action="store_true",
                    help="also time HyperDet's parts: building the views, and its backbone pass on given views")
    args = ap.parse_args(argv)
    torch.manual_seed(0)

    vision = SIZES[args.size]
    s = vision["image_size"]
    x = torch.randn(args.batch, 3, s, s)
    fp32 = build(args.size)
    bf16 = copy.deepcopy(fp32).to(torch.bfloat16)
    models = {"float32": fp32, "bfloat16": bf16}
    plain = {name: m.hyperdet.backbone for name, m in models.items()}  # the same weights, adapters bypassed
    views = {name: m.hyperdet.make_views(x) for name, m in models.items()}

    def hyperdet(name):
        return lambda: models[name](pixel_values=x)

    def plain_forward(name):
        def run():
            state = models[name].hyperdet._adapter_state
            state.enabled = False  # the hyper-LoRA layers pass straight to their base linears
            try:
                return plain[name](pixel_values=views[name]).image_embeds
            finally:
                state.enabled = True

        return run

    with torch.inference_mode():
        fns = {}
        for name in models:
            fns[f"hyperdet {name}"] = hyperdet(name)
            fns[f"plain CLIP x6 views {name}"] = plain_forward(name)
            if args.breakdown:
                body = models[name].hyperdet
                fns[f"  hyperdet part: building the views {name}"] = lambda body=body: body.make_views(x)
                fns[f"  hyperdet part: adapted backbone on given views {name}"] = (
                    lambda body=body, v=views[name]: body.encode(v, tuple(range(6))))
        secs = timed_interleaved(fns, repeats=args.repeats)
        p32 = torch.sigmoid(fp32(pixel_values=x).fused_logit)
        p16 = torch.sigmoid(bf16(pixel_values=x).fused_logit.float())
    tflops = matmul_tflops(torch.bfloat16)
    floor = 6 * args.batch * vit_flops(vision) / (tflops * 1e12)

    rows = [[name, f"{t * 1000:.1f}", f"{args.batch / t:.2f}"] for name, t in secs.items()]
    rows.append(["floor: 6 x backbone FLOPs / bf16 matmul rate", f"{floor * 1000:.1f}", f"{args.batch / floor:.2f}"])
    print(f"size={args.size} batch={args.batch} views/call={6 * args.batch} repeats={args.repeats} "
          f"bf16 matmul={tflops:.2f} TFLOP/s backbone={vit_flops(vision) / 1e9:.1f} GFLOP/image")
    print(table(rows, ["variant", "ms / call (median)", "images/s"]))
    print(f"max |P(fake) fp32 - P(fake) bf16| on random inputs: {float((p32 - p16).abs().max()):.4f}")
    ratio32 = secs["hyperdet float32"] / secs["plain CLIP x6 views float32"]
    ratio16 = secs["hyperdet bfloat16"] / secs["plain CLIP x6 views bfloat16"]
    speedup = secs["hyperdet float32"] / secs["hyperdet bfloat16"]
    print(f"RATIOS hyperdet/plain fp32={ratio32:.3f} bf16={ratio16:.3f} (target <= 1.10); "
          f"bf16 speed-up={speedup:.2f}x (target >= 3); hyperdet bf16 / floor={secs['hyperdet bfloat16'] / floor:.2f}x")


if __name__ == "__main__":
    main()
