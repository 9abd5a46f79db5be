"""Where faiss runs: the GPU when one is present (``--gpu auto``), else the CPU.

Saved indexes are always CPU indexes, so a build made on a GPU machine loads anywhere.
"""

from __future__ import annotations

import logging

import faiss

from index.errors import IndexBuildError
from index.options import choice
from recsys.choices import GpuMode

__all__ = ["GpuMode", "gpu_count", "gpu_resources", "to_cpu", "to_gpu", "use_gpu"]
log = logging.getLogger(__name__)
_resources: object | None = None


def gpu_count() -> int:
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def use_gpu(mode: GpuMode | str) -> bool:
    """Resolve ``auto|on|off``; ``on`` without a GPU is an error, not a silent CPU fallback."""
    mode = choice(GpuMode, mode, "--gpu")
    if mode is GpuMode.OFF:
        return False
    available = gpu_count() > 0 and hasattr(faiss, "StandardGpuResources")
    if mode is GpuMode.ON and not available:
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
