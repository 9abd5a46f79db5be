"""The one file lock: blocking, non-blocking and with a deadline, held across processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys.errors import ConflictError
from recsys.file_lock import LockTimeout, exclusive

HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from recsys.file_lock import exclusive

    with exclusive(Path(sys.argv[1]), optional=False):
        print("held", flush=True)
        sys.stdin.read()  # until the parent closes stdin (or kills us)
    """
)


@pytest.fixture()
def held(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """A lock file held by another process until the test lets go (or kills it)."""
    path = tmp_path / "work.lock"
    root = Path(__file__).resolve().parents[1]
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    yield path, child
    if child.poll() is None:
        child.kill()
    child.wait(30)


def test_non_blocking_yields_false_while_another_process_holds_it(
    held: tuple[Path, subprocess.Popen[str]],
) -> None:
    path, child = held
    with exclusive(path, blocking=False) as locked:
        assert locked is False
    assert f"pid {child.pid}" in path.read_text()  # the holder is named in the file


def test_a_timed_wait_raises_with_the_path_and_the_holder(
    held: tuple[Path, subprocess.Popen[str]],
) -> None:
    path, child = held
    started = time.monotonic()
    with pytest.raises(LockTimeout) as timed_out, exclusive(path, timeout_s=0.3):
        pytest.fail("the lock was taken while another process held it")
    assert time.monotonic() - started >= 0.3
    assert isinstance(timed_out.value, ConflictError)
    message = str(timed_out.value)
    assert str(path) in message and f"held by pid {child.pid}" in message


def test_the_lock_dies_with_its_holder(held: tuple[Path, subprocess.Popen[str]]) -> None:
    path, child = held
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)
    with exclusive(path, blocking=False) as locked:
        assert locked is True
        assert path.read_text() == f"pid {os.getpid()}\n"


def test_blocking_waits_until_the_holder_lets_go(
    held: tuple[Path, subprocess.Popen[str]],
) -> None:
    path, child = held
    events: list[str] = []

    def wait_for_it() -> None:
        with exclusive(path, timeout_s=30) as locked:
            events.append(f"taken {locked}")

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    waiter.join(0.3)
    assert events == []  # still waiting
    events.append("released")
    assert child.stdin is not None
    child.stdin.close()  # the holder leaves its `with` block and exits
    waiter.join(30)
    assert events == ["released", "taken True"]

    untimed: list[bool] = []
    with exclusive(path) as locked:  # blocking without a deadline: a thread of this process
        worker = threading.Thread(target=lambda: untimed.append(_take(path)))
        worker.start()
        worker.join(0.3)
        assert locked and untimed == []  # two opens exclude each other like two processes
    worker.join(30)
    assert untimed == [True]


def _take(path: Path) -> bool:
    with exclusive(path) as locked:
        return locked


def test_a_lock_file_that_cannot_be_created(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "work.lock"  # its directory does not exist
    with exclusive(path) as locked:
        assert locked is False  # nothing to share: go on without it
    with pytest.raises(FileNotFoundError), exclusive(path, optional=False):
        pytest.fail("no lock file, no lock")
