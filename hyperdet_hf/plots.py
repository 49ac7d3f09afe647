"""Figures of the paper from result dicts, with matplotlib's object API (no pyplot, no global backend change).

- ``plot_per_generator``: accuracy and AP per generator (Figure 4: radar charts; bars below three generators).
- ``plot_robustness``: a metric against Gaussian blur sigma and JPEG quality (Figures 5 and 6).
- ``plot_spectra``: mean Fourier spectra of images and of their SRM residuals (Figures 3 and 9).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .results_table import MEAN_KEY, display_name, generator_keys, is_number, ordered_generators

METRIC_LABELS = {"acc": "Accuracy (%)", "ap": "Average precision (%)", "auc": "ROC AUC (%)", "real_acc": "Real acc (%)",
                 "fake_acc": "Fake acc (%)"}


def _figure(width: float, height: float, **kwargs):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), **kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _values(results: Mapping, gens: Sequence[str], metric: str) -> np.ndarray:
    return np.array([100 * results[g][metric] if is_number(results[g].get(metric)) else np.nan for g in gens])


def plot_per_generator(results: Mapping, path: str | os.PathLike, *, metrics=("acc", "ap"), title: str = "HyperDet") -> Path:
    """Figure 4: one panel per metric, generators around a radar chart (rings every 20%), the mean in the title."""
    gens = ordered_generators(generator_keys(results))
    radar = len(gens) >= 3
    fig = _figure(5.2 * len(metrics), 5.0)
    for k, metric in enumerate(metrics):
        vals = _values(results, gens, metric)
        mean = results.get(MEAN_KEY, {}).get(metric)
        sub_title = f"{METRIC_LABELS.get(metric, metric)} — mean {100 * mean:.2f}" if is_number(mean) else METRIC_LABELS.get(metric, metric)
        if radar:
            ax = fig.add_subplot(1, len(metrics), k + 1, projection="polar")
            angles = np.linspace(0, 2 * np.pi, len(gens), endpoint=False)
            closed = np.r_[np.nan_to_num(vals), np.nan_to_num(vals[:1])]
            ax.plot(np.r_[angles, angles[:1]], closed, color=f"C{k}", linewidth=2)
            ax.fill(np.r_[angles, angles[:1]], closed, color=f"C{k}", alpha=0.2)
            ax.set_xticks(angles)
            ax.set_xticklabels([display_name(g) for g in gens], fontsize=8)
            ax.set_ylim(0, 100)
            ax.set_yticks([20, 40, 60, 80, 100])
            ax.set_yticklabels(["20", "40", "60", "80", "100"], fontsize=7)
        else:
            ax = fig.add_subplot(1, len(metrics), k + 1)
            ax.bar(range(len(gens)), np.nan_to_num(vals), color=f"C{k}")
            ax.set_xticks(range(len(gens)))
            ax.set_xticklabels([display_name(g) for g in gens], rotation=30, ha="right")
            ax.set_ylim(0, 100)
            ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.set_title(sub_title, fontsize=10)
    fig.suptitle(f"{title}: per generator")
    return _save(fig, path)


def plot_robustness(robustness: Mapping, metric: str, path: str | os.PathLike, *, method: str = "HyperDet") -> Path:
    """Figure 5 (``metric="acc"``) or 6 (``"ap"``): (a) Gaussian blur sigma, (b) JPEG quality; the mean over
    generators in bold, each generator as a thin line (labelled when there are at most 10)."""
    from .robustness import BLUR_KEY, CLEAN_KEY, JPEG_KEY, robustness_series

    gens = ordered_generators(generator_keys(robustness[CLEAN_KEY]))
    fig = _figure(11, 4.2)
    for k, (kind, xlabel) in enumerate(((BLUR_KEY, "Gaussian blur sigma (0 = clean)"), (JPEG_KEY, "JPEG quality (100 = clean)"))):
        ax = fig.add_subplot(1, 2, k + 1)
        if not robustness.get(kind):
            ax.set_axis_off()
            continue
        for j, gen in enumerate(gens):
            x, y = robustness_series(robustness, kind, metric, gen)
            y = [100 * v if is_number(v) else math.nan for v in y]
            ax.plot(x, y, linewidth=0.8, alpha=0.6, marker=".", label=display_name(gen) if len(gens) <= 10 else None)
        x, y = robustness_series(robustness, kind, metric, MEAN_KEY)
        y = [100 * v if is_number(v) else math.nan for v in y]
        ax.plot(x, y, color="black", linewidth=2.5, marker="o", label=f"{method} (mean)")
        if kind == JPEG_KEY:
            ax.invert_xaxis()
        ax.set_xlabel(xlabel)
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.set_ylim(0, 102)
        ax.grid(alpha=0.3)
        ax.set_title(f"({'ab'[k]}) {'Gaussian blur' if kind == BLUR_KEY else 'JPEG compression'}")
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"Robustness: {METRIC_LABELS.get(metric, metric)}")
    return _save(fig, path)


def plot_spectra(rows: Sequence[tuple[str, Mapping[str, np.ndarray], int]], path: str | os.PathLike,
                 *, title: str = "Mean Fourier spectrum (log10 power)") -> Path:
    """One row per image set (``label``, ``{panel: log-power map}``, number of images); panels side by side:
    the original image, then the residual of each SRM group."""
    panels = list(rows[0][1].keys()) if rows else []
    fig = _figure(2.3 * len(panels), 2.5 * len(rows) + 0.4)
    for r, (label, spectra, count) in enumerate(rows):
        for c, name in enumerate(panels):
            ax = fig.add_subplot(len(rows), len(panels), r * len(panels) + c + 1)
            img = spectra[name]
            lo, hi = np.percentile(img, [1, 99.5])
            ax.imshow(img, cmap="viridis", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name.replace("_", " "), fontsize=9)
            if c == 0:
                ax.set_ylabel(f"{label}\n(n={count})", fontsize=9)
    fig.suptitle(title)
    return _save(fig, path)
