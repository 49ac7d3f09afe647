"""The ``hyperdet`` command: ``detect``, ``eval``, ``spectrum``.

    hyperdet detect PATH... --model M [--output FILE.jsonl|FILE.csv] [--threshold 0.5] [--batch_size 32]
    hyperdet eval --model M --data ROOT [ROOT...] --output_dir OUT [--max_per_class N] [--robustness]
    hyperdet spectrum PATH... --output FILE.png

``hyperdet detect`` exit status:
    0  every input was scored;
    1  some inputs could not be read (each reported with its reason; the others were scored);
    2  usage error, or no input at all (no file found);
    3  the model could not be loaded.
``hyperdet eval``: 0 done (unreadable images are skipped and counted, not errors), 2 usage error or no benchmark
found, 3 the model could not be loaded. ``hyperdet spectrum``: 0 done, 2 usage error or no usable image.

A subcommand is one ``add_<name>(subparsers)`` function that builds its parser and sets ``func`` (a callable
``args -> exit code``); list it in ``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_MODEL = 0, 1, 2, 3
VIEW_NAMES = ("srm_1", "srm_2", "srm_3", "srm_4", "srm_5", "original")


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _add_runtime_arguments(p: argparse.ArgumentParser, batch_size: int = 32) -> None:
    p.add_argument("--model", required=True, help="a saved HyperDet folder or a Hub model id")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="weights dtype (auto: bf16 on a CPU with bf16 units or a bf16 GPU, else float32)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--batch_size", type=int, default=batch_size)
    p.add_argument("--num_workers", type=int, default=None,
                   help="image-decoding worker processes (default: 0 on <= 2 CPUs, else up to 8)")
    p.add_argument("--pad_mode", choices=("pad", "tile"), default="pad",
                   help="images smaller than the crop: zero-pad (default) or tile periodically (as Effort)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")


# -- detect -----------------------------------------------------------------------------------------------
def add_detect(subparsers) -> None:
    p = subparsers.add_parser(
        "detect",
        help="score images: P(fake) per file",
        description="Score image files, folders (recursive) and globs. One result per image: path, label, p_fake, "
        "fused logit and the six per-view logits. Unreadable files are reported one per line with a reason; the "
        "rest are scored. Exit status: 0 all scored, 1 some failed, 2 usage error or no input, 3 model not loaded.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders (searched recursively) or globs")
    _add_runtime_arguments(p)
    p.add_argument("--output", "-o", help="write results here (.jsonl or .csv; default: JSON lines on stdout)")
    p.add_argument("--format", choices=("jsonl", "csv"), default=None, help="output format (default: from --output's suffix)")
    p.add_argument("--threshold", type=float, default=0.5, help="label 'fake' when P(fake) >= threshold (default 0.5)")
    p.add_argument("--all_files", action="store_true",
                   help="in folders, try every file (default: only image extensions; files named explicitly are always tried)")
    p.set_defaults(func=run_detect)


class _Writer:
    """JSON lines or CSV rows, results and errors interleaved in input order."""

    CSV_FIELDS = ["path", "label", "p_fake", "fused_logit", *(f"logit_{v}" for v in VIEW_NAMES), "error", "message"]

    def __init__(self, stream, fmt: str):
        self.stream, self.fmt = stream, fmt
        if fmt == "csv":
            self.csv = csv.DictWriter(stream, fieldnames=self.CSV_FIELDS, extrasaction="ignore")
            self.csv.writeheader()

    def result(self, path: str, label: str, p_fake: float, fused: float, views) -> None:
        if self.fmt == "csv":
            row = {"path": path, "label": label, "p_fake": repr(p_fake), "fused_logit": repr(fused)}
            row.update({f"logit_{v}": repr(float(z)) for v, z in zip(VIEW_NAMES, views)})
            self.csv.writerow(row)
        else:
            rec = {"path": path, "label": label, "p_fake": p_fake, "fused_logit": fused,
                   "view_logits": {v: (None if z != z else float(z)) for v, z in zip(VIEW_NAMES, views)}}
            self.stream.write(json.dumps(rec) + "\n")

    def error(self, path: str, reason: str, message: str) -> None:
        if self.fmt == "csv":
            self.csv.writerow({"path": path, "error": reason, "message": message})
        else:
            self.stream.write(json.dumps({"path": path, "error": reason, "message": message}) + "\n")
        self.stream.flush()


def run_detect(args) -> int:
    from .spectrum import expand_inputs

    if args.batch_size < 1:
        _err("error: --batch_size must be >= 1")
        return EXIT_USAGE
    if not 0.0 <= args.threshold <= 1.0:
        _err("error: --threshold must be in [0, 1]")
        return EXIT_USAGE
    fmt = args.format or ("csv" if args.output and args.output.lower().endswith(".csv") else "jsonl")
    paths, unmatched = expand_inputs(args.paths, all_files=args.all_files)
    if not paths:
        _err("error: no input file found" + (f" (nothing matches: {', '.join(unmatched)})" if unmatched else ""))
        return EXIT_USAGE

    from .evaluation import check_processor, default_num_workers, score_paths
    from .inference import load_detector

    try:
        model, processor = load_detector(args.model, dtype=args.dtype, device=args.device)
    except Exception as exc:  # noqa: BLE001 - any loading failure is reported the same way
        _err(f"error: could not load the model {args.model!r}: {type(exc).__name__}: {exc}")
        return EXIT_MODEL
    check_processor(processor)

    stream = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout
    writer = _Writer(stream, fmt)
    n_ok = n_failed = 0
    try:
        for item in unmatched:
            writer.error(item, "missing", f"{item}: missing (no such file, folder or matching glob)")
            _err(f"error: {item}: missing (no such file, folder or matching glob)")
            n_failed += 1
        workers = default_num_workers() if args.num_workers is None else args.num_workers
        pending: dict[int, tuple] = {}
        next_index = 0
        for batch in score_paths(model, processor, paths, batch_size=args.batch_size, num_workers=workers,
                                 pad_mode=args.pad_mode, progress=not args.no_progress, desc="detect"):
            for k, i in enumerate(batch.indices):
                pending[i] = ("ok", float(batch.p_fake[k]), float(batch.fused_logit[k]), batch.view_logits[k])
            for i, reason, message in batch.failed:
                pending[i] = ("error", reason, message)
            while next_index in pending:  # emit in input order
                rec = pending.pop(next_index)
                path = paths[next_index]
                if rec[0] == "ok":
                    label = "fake" if rec[1] >= args.threshold else "real"
                    writer.result(path, label, rec[1], rec[2], rec[3])
                    n_ok += 1
                else:
                    writer.error(path, rec[1], rec[2])
                    _err(f"error: {rec[2]}")
                    n_failed += 1
                next_index += 1
    finally:
        if args.output:
            stream.close()
        else:
            stream.flush()
    _err(f"hyperdet detect: {n_ok} scored, {n_failed} failed" + (f"; results in {args.output}" if args.output else ""))
    return EXIT_SOME_FAILED if n_failed else EXIT_OK


# -- eval -------------------------------------------------------------------------------------------------
def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``hyperdet eval`` and ``training/eval.py``."""
    _add_runtime_arguments(p)
    p.add_argument("--data", nargs="*", default=[], metavar="ROOT",
                   help="benchmark roots: one folder per generator with 0_real/1_fake (optionally under class "
                   "folders), UnivFD diffusion sets with their real folder, GenImage nature/ai, or a Fake2M/MPBench "
                   "root with MetaData/<split>/*.csv")
    p.add_argument("--output_dir", required=True, help="results.json, results.md, scores.csv, plots")
    p.add_argument("--csv", nargs="*", default=[], metavar="FILE", help="label CSV files (path + label columns)")
    p.add_argument("--image_root", help="base folder for relative paths in --csv files")
    p.add_argument("--csv_path_column", help="path column of the CSVs (default: detected)")
    p.add_argument("--csv_label_column", help="label column of the CSVs (default: detected)")
    p.add_argument("--csv_generator_column", help="generator column of the CSVs (default: the CSV's name)")
    p.add_argument("--real_map", nargs="*", default=[], metavar="FAKE=REAL|FILE",
                   help="extra fake-folder -> real-folder pairs (or JSON/YAML files of them), added to UnivFD's table")
    p.add_argument("--split", default="val", help="GenImage/MPBench split to use when several exist (default val)")
    p.add_argument("--max_per_class", type=int, default=None, help="sample at most N images per class per generator")
    p.add_argument("--seed", type=int, default=0, help="seed of --max_per_class sampling")
    p.add_argument("--degradation", help="evaluate under one degradation: blur:SIGMA or jpeg:QUALITY")
    p.add_argument("--robustness", action="store_true",
                   help="also sweep Gaussian blur and JPEG (robustness.json, robustness_*.png)")
    p.add_argument("--blur_sigmas", type=float, nargs="+", default=[1.0, 2.0, 3.0, 4.0])
    p.add_argument("--jpeg_qualities", type=int, nargs="+", default=[90, 80, 70, 60, 50, 40, 30])
    p.add_argument("--no_plots", action="store_true", help="skip the PNG figures")
    p.add_argument("--method_name", help="row label in the tables (default: the model folder's name)")


def add_eval(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate on a benchmark (the paper's tables and figures)",
        description="Evaluate a detector per generator: accuracy at P(fake) >= 0.5, real/fake accuracy, AP, AUC, "
        "oracle-threshold accuracy; center crop, no resize. Writes results.json, results.md (Tables 1-2), "
        "scores.csv, eval_info.json, per_generator.png (Figure 4) and, with --robustness, robustness.json and "
        "robustness_{accuracy,ap}.png (Figures 5-6).",
    )
    add_eval_arguments(p)
    p.set_defaults(func=run_eval)


def eval_config_from_args(args):
    from .evaluation import EvalConfig

    return EvalConfig(
        model=args.model, data=list(args.data), output_dir=args.output_dir, csv=list(args.csv), image_root=args.image_root,
        csv_path_column=args.csv_path_column, csv_label_column=args.csv_label_column,
        csv_generator_column=args.csv_generator_column, real_map=list(args.real_map), split=args.split or None,
        max_per_class=args.max_per_class, seed=args.seed, batch_size=args.batch_size, num_workers=args.num_workers,
        dtype=args.dtype, device=args.device, pad_mode=args.pad_mode, degradation=args.degradation,
        robustness=args.robustness, blur_sigmas=list(args.blur_sigmas), jpeg_qualities=list(args.jpeg_qualities),
        plots=not args.no_plots, progress=not args.no_progress, method_name=args.method_name,
    )


def run_eval(args) -> int:
    from .evaluation import ModelLoadError, run_evaluation
    from .results_table import pct

    if args.batch_size < 1:
        _err("error: --batch_size must be >= 1")
        return EXIT_USAGE
    try:
        config = eval_config_from_args(args)
        out = run_evaluation(config)
    except ModelLoadError as exc:
        _err(f"error: {exc}")
        return EXIT_MODEL
    except (FileNotFoundError, ValueError) as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    mean, info = out["results"]["mean"], out["info"]
    _err(f"hyperdet eval: {info['n_generators']} generators, {info['n_scored']} images scored, {info['n_skipped']} skipped "
         f"({info['images_per_second']:.1f} img/s); mean acc {pct(mean['acc'])}%, mAP {pct(mean['ap'])}%")
    _err(f"results in {args.output_dir}: " + ", ".join(sorted(out["files"])))
    return EXIT_OK


# -- spectrum ---------------------------------------------------------------------------------------------
def add_spectrum(subparsers) -> None:
    p = subparsers.add_parser(
        "spectrum",
        help="mean Fourier spectrum of images and of their SRM residuals (Figures 3, 9)",
        description="Mean Fourier spectrum (log power) of images and of each SRM group's residual, side by side. "
        "Each folder argument is one row; file arguments (and globs) together form one more row. Images are center "
        "cropped to --size, never resized; smaller ones are skipped.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="folders (one row each), image files or globs")
    p.add_argument("--output", "-o", required=True, help="the PNG to write")
    p.add_argument("--labels", nargs="*", help="row labels (default: folder names)")
    p.add_argument("--size", type=int, default=224, help="center-crop size (default 224)")
    p.add_argument("--npz", help="also save the log-power arrays here (.npz)")
    p.set_defaults(func=run_spectrum)


def run_spectrum(args) -> int:
    from .spectrum import spectrum_figure

    dirs = [p for p in args.paths if os.path.isdir(p)]
    files = [p for p in args.paths if not os.path.isdir(p)]
    rows = [[d] for d in dirs] + ([files] if files else [])
    default_labels = [Path(d.rstrip("/")).name for d in dirs] + (["images"] if files else [])
    given = list(args.labels or [])
    labels = given[: len(rows)] + default_labels[len(given):]
    try:
        info = spectrum_figure(rows, args.output, labels=labels, size=args.size, npz=args.npz)
    except ValueError as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    for path, reason in info["skipped"]:
        _err(f"skipped: {path}: {reason}")
    for item in info["unmatched"]:
        _err(f"skipped: {item}: missing")
    _err("hyperdet spectrum: " + ", ".join(f"{label} ({n} images)" for label, n in info["rows"]) + f" -> {info['output']}")
    return EXIT_OK


# -- entry point ------------------------------------------------------------------------------------------
def add_demo(subparsers) -> None:
    from .demo import add_demo as add

    add(subparsers)


SUBCOMMANDS: list[Callable] = [add_detect, add_eval, add_spectrum, add_demo]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="hyperdet", description="HyperDet synthetic-image detector")
    parser.add_argument("--version", action="version", version=f"hyperdet-hf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .runtime import keep_freed_memory

    keep_freed_memory()  # a CLI run may keep its peak memory; each forward stops page-faulting (runtime.py)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
