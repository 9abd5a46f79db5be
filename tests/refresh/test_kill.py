"""SIGKILL a real ``recsys embed`` mid-run, several times: the end state is still exact."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from recsys.db import Database, open_database
from recsys.refresh import RefreshOptions, run_refresh
from recsys.settings import Settings, load_settings
from recsys.synth import CorpusInfo
from tests.refresh.helpers import embedding_rows, ingest, make_model, orphan_files, stored

RECSYS = Path(sys.executable).with_name("recsys")
pytestmark = pytest.mark.slow


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    env["RECSYS_HOME"] = str(settings.resolved_home)
    if settings.database_url:
        env["RECSYS_DATABASE_URL"] = settings.database_url
    return env


def _start(settings: Settings) -> subprocess.Popen[bytes]:
    command = [str(RECSYS), "embed", "--workers", "1", "--batch-size", "2", "--json"]
    return subprocess.Popen(
        command,
        env=_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the job itself, then make sure no worker of it survives the test."""
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)


def _run_and_kill(
    settings: Settings,
    database: Database,
    version: str,
    *,
    at_rows: int | None = None,
    after_s: float | None = None,
) -> int:
    """Start a run and SIGKILL it once ``at_rows`` embeddings exist or ``after_s`` passed."""
    process = _start(settings)
    started = time.monotonic()
    try:
        while process.poll() is None:
            rows = embedding_rows(database, version)[0]
            if (at_rows is not None and rows >= at_rows) or (
                after_s is not None and time.monotonic() - started >= after_s
            ):
                _kill(process)
                return rows
            if time.monotonic() - started > 300:
                pytest.fail("recsys embed did not reach the kill point within 300 s")
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            _kill(process)
    out, err = process.communicate()
    pytest.fail(f"run finished before it could be killed: {err.decode()[-2000:]}")


def test_killed_runs_resume_to_exactly_one_equal_embedding_per_video(
    settings: Settings,
    database: Database,
    corpus: CorpusInfo,
    dims: tuple[int, int],
    tmp_path: Path,
) -> None:
    ingest(settings, database, [corpus.manifest])
    version = make_model(settings, database, dims, seed=0)
    total = len(corpus.videos)

    # Killed right after the first committed batch, then after two more, then at a random
    # early moment (seeded) that may fall anywhere from start-up to the middle of a batch.
    first = _run_and_kill(settings, database, version, at_rows=2)
    assert 2 <= first < total
    second = _run_and_kill(settings, database, version, at_rows=first + 4)
    assert first + 4 <= second < total
    _run_and_kill(settings, database, version, after_s=random.Random(4).uniform(0.5, 6.0))
    before_final = embedding_rows(database, version)[0]
    assert before_final < total

    final = _start(settings)
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err.decode()[-3000:]
    summary = json.loads(out)
    assert summary["failed"] == 0
    assert summary["embedded"] == total - before_final

    assert embedding_rows(database, version) == (total, total)
    assert orphan_files(settings, database, version) == []
    resumed = stored(settings, database, version)

    # The same model and corpus in a fresh home, embedded without interruption.
    reference_settings = load_settings(tmp_path / "reference")
    reference_settings.ensure_dirs()
    reference_db = open_database(reference_settings)
    try:
        ingest(reference_settings, reference_db, [corpus.manifest])
        assert make_model(reference_settings, reference_db, dims, seed=0) == version
        run_refresh(reference_settings, reference_db, RefreshOptions(workers=2, progress=False))
        reference = stored(reference_settings, reference_db, version)
    finally:
        reference_db.dispose()
    assert sorted(resumed) == sorted(reference)
    for name, vector in reference.items():
        np.testing.assert_allclose(resumed[name], vector, atol=1e-5)
