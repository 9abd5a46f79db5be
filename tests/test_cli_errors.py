"""The CLI's failures the machine causes (a database it cannot reach, a full disk) are one
line that names what failed and what to do, exit 1, never a traceback, never a password."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from index import BuildOptions, build_index, current_version, load_active
from recsys.db import Database
from recsys.settings import Settings
from tests.index.catalog import make_catalog

SECRET = "s3cr3t-Pa55"
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING) ")
# Run the CLI with a file-size limit: a write past it fails as on a full disk (EFBIG).
FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    sys.argv = ["recsys", *sys.argv[2:]]
    from orchestration.cli.main import app
    app()
    """
)


def _recsys(
    args: list[str], env: dict[str, str], limit: int | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", FULL_DISK, str(limit)] if limit else [sys.executable, "-m"]
    if not limit:
        command.append("orchestration.cli.main")
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "COLUMNS": "300", **env},
        cwd=Path(__file__).parent.parent,
    )


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line the failure printed (log lines of the work before it aside)."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "╭" not in output, output
    lines = [line for line in result.stderr.splitlines() if not LOG_LINE.match(line)]
    assert len(lines) == 1, result.stderr
    assert result.returncode == 1, output
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # nothing listens on port 1: unreachable
        (f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/test", "cannot connect"),
        # a driver that is not installed (psycopg2), a dialect that does not exist, no URL
        (f"postgresql+psycopg2://postgres:{SECRET}@127.0.0.1/test", "driver"),
        (f"postgres+nosuch://postgres:{SECRET}@127.0.0.1/test", "not a supported database"),
        (f"postgres:{SECRET}@127.0.0.1", "not a database URL"),
        # a SQLite file in a folder that does not exist
        ("sqlite:////nonexistent-recsys-folder/x/recsys.db", "cannot connect"),
    ],
)
def test_a_bad_database_url_is_one_line(tmp_path: Path, url: str, expected: str) -> None:
    result = _recsys(["status", "--home", str(tmp_path)], {"RECSYS_DATABASE_URL": url})
    line = _error_line(result)
    assert expected in line
    assert "RECSYS_DATABASE_URL" in line
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.postgres
def test_a_missing_postgres_database_is_one_line(tmp_path: Path, postgres_template: str) -> None:
    from tests.conftest import POSTGRES_ADMIN_URL

    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgres@", f"postgres:{SECRET}@")
    result = _recsys(
        ["status", "--home", str(tmp_path)],
        {"RECSYS_DATABASE_URL": f"{url}/no_such_recsys_database"},
    )
    line = _error_line(result)
    assert "no_such_recsys_database" in line and "does not exist" in line
    assert SECRET not in result.stdout + result.stderr


def test_a_full_disk_during_index_build_is_one_line(settings: Settings, database: Database) -> None:
    make_catalog(settings, database, 2000, 32)
    served = build_index(settings, database, BuildOptions(gpu="off")).version
    env = {"RECSYS_DATABASE_URL": settings.database_url or ""}
    home = ["--home", str(settings.resolved_home)]
    # The index file (~270 kB) does not fit; the database and the logs do.
    result = _recsys(["index", "build", "--gpu", "off", *home], env, limit=100_000)
    line = _error_line(result)
    assert "disk" in line and "index.faiss" in line and "free" in line
    assert current_version(settings) == served
    loaded = load_active(settings)
    assert loaded is not None and loaded.version == served
    assert not [p for p in settings.indexes_dir.iterdir() if p.name.endswith(".tmp")]
