"""Result tables in the layout of the paper's Tables 1-2 (generators as columns, in UnivFD order).

Shared by ``results.md`` (evaluation) and the model card. A results dict is ``results.json``-shaped:
``{generator: {"acc", "real_acc", "fake_acc", "ap", "n_real", "n_fake", ...}, "mean": {...}}`` with metrics
as fractions in [0, 1] (``None`` where undefined, e.g. AP of a generator with one class only).
"""

from __future__ import annotations

import math
import re
from typing import Iterable, Mapping, Optional

MEAN_KEY = "mean"

# (normalised key, display name, family) in the column order of the paper's Tables 1-2 (UnivFD test set),
# plus the CNNDetection-only sets (StyleGAN2, WhichFaceIsReal) where they belong.
_UNIVFD_COLUMNS = [
    ("progan", "ProGAN", "GAN"),
    ("cyclegan", "CycleGAN", "GAN"),
    ("biggan", "BigGAN", "GAN"),
    ("stylegan", "StyleGAN", "GAN"),
    ("stylegan2", "StyleGAN2", "GAN"),
    ("gaugan", "GauGAN", "GAN"),
    ("stargan", "StarGAN", "GAN"),
    ("whichfaceisreal", "WFIR", "GAN"),
    ("deepfake", "Deepfakes", "Deepfakes"),
    ("seeingdark", "SITD", "Low level vision"),
    ("san", "SAN", "Low level vision"),
    ("crn", "CRN", "Perceptual loss"),
    ("imle", "IMLE", "Perceptual loss"),
    ("guided", "Guided", "Diffusion"),
    ("ldm200", "LDM 200s", "Diffusion"),
    ("ldm200cfg", "LDM 200s w/CFG", "Diffusion"),
    ("ldm100", "LDM 100s", "Diffusion"),
    ("glide10027", "GLIDE 100-27", "Diffusion"),
    ("glide5027", "GLIDE 50-27", "Diffusion"),
    ("glide10010", "GLIDE 100-10", "Diffusion"),
    ("dalle", "DALL-E", "Diffusion"),
]
_ALIASES = {"deepfakes": "deepfake", "sitd": "seeingdark", "wfir": "whichfaceisreal"}
_KNOWN = {key: i for i, (key, _, _) in enumerate(_UNIVFD_COLUMNS)}


def _norm(name: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return _ALIASES.get(key, key)


def generator_keys(results: Mapping) -> list[str]:
    """The generator entries of a results dict (every dict value except ``mean`` and ``_``-prefixed keys)."""
    return [k for k, v in results.items() if k != MEAN_KEY and not str(k).startswith("_") and isinstance(v, Mapping)]


def ordered_generators(names: Iterable[str]) -> list[str]:
    """UnivFD generators in the paper's column order, then any others alphabetically."""
    names = list(names)
    known = sorted((n for n in names if _norm(n) in _KNOWN), key=lambda n: (_KNOWN[_norm(n)], n))
    other = sorted(n for n in names if _norm(n) not in _KNOWN)
    return known + other


def display_name(name: str) -> str:
    key = _norm(name)
    return _UNIVFD_COLUMNS[_KNOWN[key]][1] if key in _KNOWN else name


def family(name: str) -> Optional[str]:
    key = _norm(name)
    return _UNIVFD_COLUMNS[_KNOWN[key]][2] if key in _KNOWN else None


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def pct(value, digits: int = 2) -> str:
    """A fraction as a percentage string (``"—"`` when undefined)."""
    return f"{100 * value:.{digits}f}" if is_number(value) else "—"


def mean_of(rows: Iterable[Mapping], key: str) -> Optional[float]:
    """Mean of the defined values of ``key`` (``None`` when there is none)."""
    values = [r[key] for r in rows if is_number(r.get(key))]
    return sum(values) / len(values) if values else None


def _families_line(gens: list[str]) -> str:
    groups: list[tuple[str, list[str]]] = []
    for g in gens:
        fam = family(g) or "Other"
        if groups and groups[-1][0] == fam:
            groups[-1][1].append(display_name(g))
        else:
            groups.append((fam, [display_name(g)]))
    return "; ".join(f"{fam}: {', '.join(names)}" for fam, names in groups)


def paper_tables(results: Mapping, method: str = "HyperDet", heading_level: int = 3) -> str:
    """Markdown for Table 1 (accuracy at 0.5) and Table 2 (AP): one row for ``method``, generators as
    columns (UnivFD order), the mean over generators last (the paper's avg. Acc and mAP), in percent."""
    gens = ordered_generators(generator_keys(results))
    mean = results.get(MEAN_KEY, {})
    h = "#" * heading_level
    header = "| Method | " + " | ".join(display_name(g) for g in gens)
    rule = "|---|" + "---:|" * (len(gens) + 1)
    out = [
        f"{h} Table 1: accuracy (%) at P(fake) >= 0.5",
        "",
        f"Columns (families): {_families_line(gens)}." if gens else "",
        "",
        header + " | avg. Acc |",
        rule,
        f"| {method} | " + " | ".join(pct(results[g].get("acc")) for g in gens) + f" | {pct(mean.get('acc'))} |",
        "",
        f"{h} Table 2: average precision (%)",
        "",
        header + " | mAP |",
        rule,
        f"| {method} | " + " | ".join(pct(results[g].get("ap")) for g in gens) + f" | {pct(mean.get('ap'))} |",
    ]
    return "\n".join(out)


DETAIL_COLUMNS = [
    ("acc", "Acc", True),
    ("real_acc", "Real acc", True),
    ("fake_acc", "Fake acc", True),
    ("ap", "AP", True),
    ("auc", "AUC", True),
    ("acc_oracle", "Oracle acc", True),
    ("threshold_oracle", "Oracle thr.", False),
    ("n_real", "n real", False),
    ("n_fake", "n fake", False),
    ("n_skipped", "skipped", False),
]


def detail_table(results: Mapping) -> str:
    """Per-generator metrics (rows), with the ``mean`` row last."""
    gens = ordered_generators(generator_keys(results))
    cols = [c for c in DETAIL_COLUMNS if any(c[0] in results[g] for g in gens)]
    lines = [
        "| Generator | " + " | ".join(c[1] for c in cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]

    def cell(row, key, as_pct):
        value = row.get(key)
        if as_pct:
            return pct(value)
        if isinstance(value, float):
            return f"{value:.4f}" if math.isfinite(value) else "—"
        return "—" if value is None else str(value)

    rows = [(display_name(g), results[g]) for g in gens]
    if MEAN_KEY in results:
        rows.append((f"**{MEAN_KEY}**", results[MEAN_KEY]))
    for name, row in rows:
        lines.append(f"| {name} | " + " | ".join(cell(row, k, p) for k, _, p in cols) + " |")
    return "\n".join(lines)
