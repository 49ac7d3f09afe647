"""Process-wide settings for CPU runs of the command-line tools: keep freed memory for reuse.

glibc's malloc hands every allocation above a threshold (128 KiB to 32 MiB, adaptive) straight to ``mmap``
and gives it back with ``munmap`` when freed. A ViT forward allocates and frees tens of MB per block, so
each call page-faults all of its activations in again: measured on a ViT-L/14 forward in bf16 on this
project's 2-core machines, 16.3 s -> 12.1 s at 4 images (24 views), 3.5 s -> 2.9 s at 1 image
(``benchmarks/bench_malloc.py`` measures it). Serving large blocks from the heap and never trimming
it does for this process what preloading jemalloc or tcmalloc does (PyTorch's CPU performance guide), without
a launcher. The price: the process keeps its peak memory until it exits, which suits a CLI run, so only the
entry points (``hyperdet``, ``training/train.py``, the benchmarks) call it, never ``import hyperdet_hf``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

logger = logging.getLogger(__name__)

ENV_SWITCH = "HYPERDET_KEEP_FREED_MEMORY"
_M_TRIM_THRESHOLD = -1  # glibc malloc.h
_M_MMAP_MAX = -4
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc malloc serve large blocks from its heap and keep what is freed (idempotent).

    Returns whether the setting is in force: False off Linux/glibc, or when ``HYPERDET_KEEP_FREED_MEMORY=0``.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt: nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # 0 mmapped blocks: every block comes from the heap; trim threshold at its maximum: the heap is kept.
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    logger.debug("glibc malloc keeps freed memory: %s", _applied)
    return _applied
