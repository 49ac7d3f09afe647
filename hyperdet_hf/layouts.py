"""Where the labels of a detection dataset live on disk.

- CNNDetection / ProGAN train and UnivFD test: the label is the nearest ancestor folder named
  ``0_real`` or ``1_fake``, at any depth (``<root>/<class>/0_real/x.png`` or ``<root>/0_real/x.png``).
- GenImage: ``nature`` (real) and ``ai`` (fake) folders, e.g. ``<gen>/{train,val}/{nature,ai}``.

A benchmark root holds one folder per generator, each in one of these layouts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .image_io import is_image_file

LABEL_FOLDERS = {"0_real": 0, "1_fake": 1, "nature": 0, "ai": 1}
LABEL_NAMES = {0: "real", 1: "fake"}


@dataclass(frozen=True)
class Example:
    path: str
    label: int
    generator: str = ""


def label_from_path(path: Path, root: Path) -> int | None:
    """Label from the nearest labelled ancestor folder below ``root``, or None."""
    for parent in path.relative_to(root).parents:
        if parent.name in LABEL_FOLDERS:
            return LABEL_FOLDERS[parent.name]
    return None


def scan_labeled_folder(root: str | os.PathLike, generator: str = "") -> tuple[list[Example], int]:
    """All image files under ``root`` with a label from their folders, sorted by path.

    Returns ``(examples, unlabeled)`` where ``unlabeled`` counts image files outside any labelled folder.
    Raises ``FileNotFoundError`` naming the path when ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    examples, unlabeled = [], 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not is_image_file(path):
                continue
            label = label_from_path(path, root)
            if label is None:
                unlabeled += 1
                continue
            examples.append(Example(str(path), label, generator))
    return examples, unlabeled


def scan_benchmark(root: str | os.PathLike) -> dict[str, list[Example]]:
    """``{generator: examples}`` for a root with one folder per generator (sorted by name).

    Generators with no labelled image are left out; a root with none at all raises ``ValueError``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"benchmark root not found: {root}")
    out = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        examples, _ = scan_labeled_folder(sub, generator=sub.name)
        if examples:
            out[sub.name] = examples
    if not out:
        raise ValueError(
            f"{root}: no generator folder with labelled images (expected <generator>/0_real and <generator>/1_fake, "
            "optionally under class folders, or GenImage's nature/ai)"
        )
    return out
