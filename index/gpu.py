"""Where faiss runs: the GPU when one is present (``--gpu auto``), else the CPU.

Saved indexes are always CPU indexes, so a build made on a GPU machine loads anywhere.
"""

from __future__ import annotations

import logging
from typing import Literal

import faiss

from index.errors import IndexBuildError

GpuMode = Literal["auto", "on", "off"]
log = logging.getLogger(__name__)
_resources: object | None = None


def gpu_count() -> int:
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def use_gpu(mode: str) -> bool:
    """Resolve ``auto|on|off``; ``on`` without a GPU is an error, not a silent CPU fallback."""
    if mode not in ("auto", "on", "off"):
        raise IndexBuildError(f"--gpu must be auto, on or off, not {mode!r}")
    if mode == "off":
        return False
    available = gpu_count() > 0 and hasattr(faiss, "StandardGpuResources")
    if mode == "on" and not available:
        raise IndexBuildError(
            "--gpu on, but faiss sees no GPU (install faiss-gpu and check CUDA); use --gpu auto"
        )
    return available


def gpu_resources() -> object:
    """One shared ``StandardGpuResources`` per process (it owns scratch memory)."""
    global _resources
    if _resources is None:
        _resources = faiss.StandardGpuResources()
    return _resources


def to_gpu(index: faiss.Index, *, float16: bool) -> faiss.Index:
    """Clone a CPU index to GPU 0; ``float16`` halves memory for IVF-Flat and PQ tables."""
    options = faiss.GpuClonerOptions()
    options.useFloat16 = float16  # IVF-Flat storage / PQ lookup tables in half precision
    return faiss.index_cpu_to_gpu(gpu_resources(), 0, index, options)  # type: ignore[arg-type]


def to_cpu(index: faiss.Index) -> faiss.Index:
    return faiss.index_gpu_to_cpu(index)
