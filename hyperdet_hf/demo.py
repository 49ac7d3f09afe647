"""`hyperdet demo`: the whole product end to end, offline, on this CPU, in minutes.

1. builds the embedded proxy benchmark (real photo crops vs simulated generator families);
2. trains HyperDet and three baselines on the seen families through the real training code
   (`hyperdet_hf.training`: Accelerate, `datasets` streams), on one random-weight CLIP backbone
   (nothing can be downloaded here; the same seed gives every variant the same backbone);
3. evaluates every variant on all families through the real evaluation code (Table-1-style report),
   with the robustness sweep and plots for HyperDet;
4. reloads HyperDet's Hub-ready folder through `AutoModelForImageClassification(trust_remote_code=True)`
   and the image-classification pipeline and classifies a few images;
5. writes `REPORT.md` (the comparison of seen and unseen families) and prints where everything is.

The variants (one class, other config, see `HyperDetConfig.adapter_type` / `view_source`):
  linear_probe   UnivFD-style: frozen CLIP, original view only, linear head
  lora_per_view  HyperDet's six views, but an independent LoRA per view (no hypernetwork)
  hyperdet_no_srm  the hypernetwork, but every view is the original image
  hyperdet       the method
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .proxy_benchmark import FAMILIES, SEEN_FAMILIES, build_proxy_benchmark

VARIANTS = {
    "linear_probe": {"adapter_type": "none", "view_source": "original"},
    "lora_per_view": {"adapter_type": "lora", "view_source": "srm"},
    "hyperdet_no_srm": {"adapter_type": "hyper", "view_source": "original"},
    "hyperdet": {"adapter_type": "hyper", "view_source": "srm"},
}

# A small random-weight CLIP: big enough that random features separate upsampling traces, small
# enough to train four variants on two cores in minutes.
DEMO_VISION = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=6, num_attention_heads=4,
                   patch_size=8, image_size=64, projection_dim=64)
QUICK_VISION = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                    patch_size=8, image_size=32, projection_dim=32)

SETTINGS = {
    "full": dict(vision=DEMO_VISION, tuned_layers=[3, 4, 5], file_size=72, train_per_class=192, val_per_class=32,
                 test_per_class=64, epochs=8, batch=32, lr=1e-3, robustness=True),
    "quick": dict(vision=QUICK_VISION, tuned_layers=[2, 3], file_size=40, train_per_class=48, val_per_class=8,
                  test_per_class=16, epochs=16, batch=16, lr=1e-3, robustness=False),
}


def _say(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def training_config(variant: str, data: dict, out: Path, settings: dict, seed: int) -> dict:
    """The YAML a user could run again with `accelerate launch training/train.py --config ...`."""
    return {
        "backbone": "random",
        "model": {"vision_config": dict(settings["vision"]), "tuned_layers": settings["tuned_layers"], "lora_rank": 8,
                  "loss_alpha": 0.1, **VARIANTS[variant]},
        "train_data": data["train"],
        "val_data": data["val"],
        "output_dir": str(out / "runs" / variant),
        "overwrite_output_dir": True,
        "num_epochs": settings["epochs"],
        "per_device_batch_size": settings["batch"],
        "learning_rate": settings["lr"],
        "lr_scheduler": "constant",
        "augment": {"blur_prob": 0.1, "jpeg_prob": 0.1},
        "seed": seed,
        "num_workers": 0,
        "save_steps": 0,
        "logging_steps": 10,
        "report_to": "tensorboard",
    }


def run_training(config_path: Path, log_path: Path) -> None:
    """One training run in its own process (as `python training/train.py --config ...` would be)."""
    cmd = [sys.executable, "-c", "import sys; from hyperdet_hf.training import main; sys.exit(main())",
           "--config", str(config_path)]
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    if proc.returncode != 0:
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"training failed ({config_path}); last lines of {log_path}:\n{tail}")


def comparison(out: Path, variants: list[str], seen: list[str]) -> tuple[str, dict]:
    """Markdown table: per family accuracy / AP / AUC of each variant, and seen/unseen means."""
    table, summary = {}, {}
    for variant in variants:
        folder = out / "eval" / variant
        results = json.loads((folder / "results.json").read_text())
        rows = {}
        for family in FAMILIES:
            if family not in results:
                continue
            r = results[family]
            rows[family] = {"acc": r["acc"], "ap": r["ap"], "auc": r["auc"]}
        table[variant] = rows
        mean = lambda fams, k: sum(rows[f][k] for f in fams) / len(fams) if fams else float("nan")
        unseen = [f for f in rows if f not in seen]
        summary[variant] = {"seen_acc": mean([f for f in rows if f in seen], "acc"), "unseen_acc": mean(unseen, "acc"),
                            "seen_ap": mean([f for f in rows if f in seen], "ap"), "unseen_ap": mean(unseen, "ap")}
    families = [f for f in FAMILIES if any(f in t for t in table.values())]
    lines = ["| family | " + " | ".join(variants) + " |", "|" + "---|" * (len(variants) + 1)]
    for f in families:
        cells = []
        for variant in variants:
            r = table[variant][f]
            auc = "n/a" if r["auc"] is None else f"{r['auc']:.3f}"
            cells.append(f"{r['acc']:.3f} / {r['ap']:.3f} / {auc}")
        lines.append(f"| {f}{' (seen)' if f in seen else ''} | " + " | ".join(cells) + " |")
    for kind in ("seen", "unseen"):
        cells = [f"{summary[v][kind + '_acc']:.3f} / {summary[v][kind + '_ap']:.3f}" for v in variants]
        lines.append(f"| **mean {kind}** (acc / AP) | " + " | ".join(cells) + " |")
    note = "Cells: accuracy at P(fake) >= 0.5 / average precision / ROC AUC."
    return "\n".join(lines) + "\n\n" + note + "\n", {"per_family": table, "summary": summary}


def check_hub_folder(final: Path, test_root: Path, n: int = 4) -> list[dict]:
    """Reload the Hub-ready folder the way a user of the Hub would, and classify a few test images."""
    import torch
    from transformers import AutoModelForImageClassification, pipeline

    from .image_io import load_rgb
    from .layouts import scan_benchmark

    model = AutoModelForImageClassification.from_pretrained(final, trust_remote_code=True).eval()
    pipe = pipeline("image-classification", model=str(final), trust_remote_code=True)
    examples = []
    for family, exs in sorted(scan_benchmark(test_root).items()):
        examples += [next(e for e in exs if e.label == 0), next(e for e in exs if e.label == 1)]
    out = []
    for example in examples[:n]:  # a real and a fake of the first families
        preds = {p["label"]: p["score"] for p in pipe(load_rgb(example.path))}
        inputs = pipe.image_processor(images=load_rgb(example.path), return_tensors="pt")
        with torch.no_grad():
            p_model = torch.sigmoid(model(**inputs).fused_logit).item()
        out.append({"path": example.path, "generator": example.generator, "label": "fake" if example.label else "real",
                    "pipeline_p_fake": preds["fake"], "model_p_fake": p_model,
                    "predicted": max(preds, key=preds.get)})
    return out


def run_demo(output_dir: str | Path = "outputs/demo", seed: int = 0, quick: bool = False,
             variants: list[str] | None = None) -> dict:
    from .evaluation import EvalConfig, run_evaluation
    from .model_card import write_model_card

    started = time.time()
    settings = SETTINGS["quick" if quick else "full"]
    variants = list(variants or VARIANTS)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"variants: unknown {unknown}; choose from {list(VARIANTS)}")
    out = Path(output_dir)
    if out.exists() and any(out.iterdir()):
        if not (out / "demo_summary.json").exists() and not (out / "data" / "manifest.json").exists():
            raise ValueError(f"output_dir: {out} exists and does not hold an earlier demo; refusing to replace it")
        shutil.rmtree(out)
    (out / "configs").mkdir(parents=True)
    (out / "logs").mkdir()

    _say(f"1/5 building the proxy benchmark in {out / 'data'} (seed {seed})")
    data = build_proxy_benchmark(out / "data", seed=seed, size=settings["file_size"],
                                 train_per_class=settings["train_per_class"], val_per_class=settings["val_per_class"],
                                 test_per_class=settings["test_per_class"])
    _say(f"    {data['files']} PNG files; seen families {data['seen']}, test families {data['families']}")

    timings = {}
    for i, variant in enumerate(variants, 1):
        config = training_config(variant, data, out, settings, seed)
        path = out / "configs" / f"{variant}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        _say(f"2/5 training {variant} ({i}/{len(variants)}): log {out / 'logs' / (variant + '.log')}")
        t = time.time()
        run_training(path, out / "logs" / f"{variant}.log")
        timings[f"train {variant}"] = round(time.time() - t, 1)

    for variant in variants:
        robust = settings["robustness"] and variant == "hyperdet"
        _say(f"3/5 evaluating {variant} on {len(data['families'])} families" + (" with the robustness sweep" if robust else ""))
        t = time.time()
        result = run_evaluation(EvalConfig(
            model=str(out / "runs" / variant / "final"), data=[data["test"]], output_dir=str(out / "eval" / variant),
            split=None, batch_size=64, num_workers=0, robustness=robust, method_name=variant, progress=False,
        ))
        timings[f"eval {variant}"] = round(time.time() - t, 1)
        if variant == "hyperdet":
            run_config = yaml.safe_load((out / "configs" / "hyperdet.yaml").read_text())
            run_config["eval_dataset"] = f"HyperDet-HF proxy benchmark (seed {seed}, random-weight backbone)"
            train_summary_path = out / "runs" / variant / "train_results.json"
            val = json.loads(train_summary_path.read_text()).get("validation") if train_summary_path.exists() else None
            write_model_card(out / "runs" / variant / "final", run_config=run_config, val_results=val,
                             eval_results=result["results"])

    _say("4/5 reloading runs/hyperdet/final with AutoModelForImageClassification(trust_remote_code=True) and the pipeline")
    samples = check_hub_folder(out / "runs" / "hyperdet" / "final", Path(data["test"])) if "hyperdet" in variants else []
    for s in samples:
        _say(f"    {Path(s['path']).name}: truth {s['label']}, pipeline says {s['predicted']} "
             f"(P(fake) pipeline {s['pipeline_p_fake']:.3f}, model {s['model_p_fake']:.3f})")

    _say("5/5 writing the report")
    table, numbers = comparison(out, variants, list(data["seen"]))
    elapsed = round(time.time() - started, 1)
    report = [
        "# HyperDet demo report", "",
        f"Proxy benchmark: seed {seed}, {data['files']} PNG files of {settings['file_size']}x{settings['file_size']}; "
        f"trained on {', '.join(data['seen'])}; tested on {', '.join(data['families'])}. Backbone: a random-weight "
        f"CLIP vision tower {settings['vision']} (frozen), the same for every variant.", "",
        table,
        "Variants: " + "; ".join(f"`{k}` = {v}" for k, v in VARIANTS.items() if k in variants) + ".", "",
        f"Total time {elapsed} s: " + ", ".join(f"{k} {v} s" for k, v in timings.items()) + ".", "",
        "Outputs: `data/` (benchmark), `configs/` (training YAMLs), `runs/<variant>/final` (Hub-ready folders), "
        "`eval/<variant>/` (results.json, results.md, scores.csv, plots), `logs/`.",
    ]
    (out / "REPORT.md").write_text("\n".join(report) + "\n")
    summary = {"output_dir": str(out), "seconds": elapsed, "timings": timings, "seen": list(data["seen"]),
               "families": list(data["families"]), "comparison": numbers, "pipeline_samples": samples,
               "report": str(out / "REPORT.md")}
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    print()
    print(table)
    _say(f"done in {elapsed} s. Report: {out / 'REPORT.md'}")
    _say(f"  Hub-ready model: {out / 'runs' / 'hyperdet' / 'final'} (model card README.md inside)")
    _say(f"  per-generator results: {out / 'eval' / 'hyperdet' / 'results.md'}")
    if settings["robustness"] and "hyperdet" in variants:
        _say(f"  robustness: {out / 'eval' / 'hyperdet' / 'robustness.json'} and its PNG plots")
    _say(f"  TensorBoard logs: {out / 'runs'}/<variant>/logs")
    return summary


def add_demo(subparsers) -> None:
    p = subparsers.add_parser("demo", help="the embedded end-to-end run (offline, minutes)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--output_dir", default="outputs/demo",
                   help="where everything goes (an earlier demo there is replaced; any other non-empty folder is refused)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smaller data, model and schedule (about a minute)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="train only these (default: all four)")
    p.set_defaults(func=_run_from_args)


def _run_from_args(args) -> int:
    try:
        run_demo(args.output_dir, args.seed, args.quick, args.variants)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # python -m hyperdet_hf.demo
    parser = argparse.ArgumentParser(prog="hyperdet")
    add_demo(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(["demo", *sys.argv[1:]])
    sys.exit(ns.func(ns))
