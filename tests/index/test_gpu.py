"""The GPU build path gives the same results as the CPU one within the recall tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from index import BuildOptions, build_index, load_active, load_index
from index.gpu import gpu_count
from recsys.db import open_database
from recsys.settings import Settings
from tests.conftest import require
from tests.index.catalog import make_catalog


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["ivfflat", "flat"])
def test_gpu_build_matches_cpu(sqlite_settings: Settings, kind: str) -> None:
    require(gpu_count() > 0, "faiss sees no GPU (needs faiss-gpu and CUDA)", gpu=True)
    settings = sqlite_settings
    database = open_database(settings)
    ids, vectors = make_catalog(settings, database, 3000, 32)
    cpu = build_index(settings, database, BuildOptions(kind=kind, gpu="off", publish=False))
    gpu = build_index(settings, database, BuildOptions(kind=kind, gpu="on"))
    assert gpu.recall_at_k >= 0.95 and cpu.recall_at_k >= 0.95 and gpu.k == cpu.k == 10
    assert gpu.factory == cpu.factory
    on_gpu = load_active(settings, gpu="on")
    assert on_gpu is not None and on_gpu.on_gpu
    on_cpu = load_index(cpu.directory, gpu="off")
    _, found_gpu = on_gpu.search(vectors[:200], 10)
    _, found_cpu = on_cpu.search(vectors[:200], 10)
    overlap = np.mean([np.isin(a, b).mean() for a, b in zip(found_gpu, found_cpu, strict=True)])
    assert overlap >= 0.9
    assert np.array_equal(found_gpu[:, 0], ids[:200])
    on_gpu.remove_ids(ids[:5])  # GPU search filters hidden ids by searching deeper
    _, found = on_gpu.search(vectors[:10], 10)
    assert not np.isin(found, ids[:5]).any()
