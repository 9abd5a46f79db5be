"""Per-video time limits.

Two layers, because neither alone stops every crafted file:

* ``Deadline`` is checked inside every decode loop (per packet / per frame). It stops run-away
  decodes cheaply and precisely: a stream with millions of tiny frames, a bogus duration that
  makes a loop go on and on, an audio track that never ends.
* ``run_isolated`` runs the whole decode in a separate worker process
  (``python -m recsys.media.worker``) and kills it when it overstays ``timeout_s`` plus a small
  grace. This is the hard limit: it also stops a decoder stuck inside one C call (which no
  Python-level check can interrupt) and turns a decoder crash (segfault) into a
  ``CorruptMedia`` error instead of killing the caller.

Workers are plain subprocesses, not ``multiprocessing`` children, so they work from any caller
(scripts without a ``__main__`` guard, daemonic pool workers, Ray tasks, uvicorn). A worker
stays alive between decodes (the ~0.3 s interpreter + PyAV start is paid once per worker);
one that timed out or crashed is killed and replaced on the next call. Messages between the
caller and its own worker are pickles; nothing unpickles data read from media files.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

from recsys.media.errors import CorruptMedia, DecodeTimeout, MediaError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Extra seconds a worker gets beyond ``timeout_s`` to notice the deadline itself and to send
#: its result back; only after that is it killed.
HARD_LIMIT_GRACE_S = 2.0
#: Time allowed for a fresh worker to start (import PyAV) before it is considered broken.
WORKER_START_TIMEOUT_S = 60.0
#: Idle workers kept for reuse; more concurrent callers get extra workers that exit after use.
MAX_IDLE_WORKERS = 4
#: A worker is replaced after this many jobs, so slow leaks in native code cannot pile up.
MAX_JOBS_PER_WORKER = 1000
_HEADER = struct.Struct("!Q")


class Deadline:
    """A point in monotonic time after which decoding must stop."""

    def __init__(self, path: str | Path, timeout_s: float | None) -> None:
        self.path = str(path)
        self.timeout_s = timeout_s
        self.expires = None if timeout_s is None else time.monotonic() + timeout_s

    def check(self) -> None:
        if self.expires is not None and time.monotonic() > self.expires:
            raise DecodeTimeout(
                self.path, f"decoding exceeded the time limit of {self.timeout_s:g} s"
            )


def write_message(stream: IO[bytes], payload: Any) -> None:
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


class _WorkerGone(Exception):
    pass


def _read_exact(fd: int, n: int, expires: float | None) -> bytes:
    chunks: list[bytes] = []
    while n > 0:
        wait = None if expires is None else max(0.0, expires - time.monotonic())
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            raise TimeoutError
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise _WorkerGone
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_message(fd: int, expires: float | None) -> Any:
    (length,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, expires))
    # After the header arrived the worker is done; give the transfer itself time.
    body_expires = None if expires is None else max(expires, time.monotonic() + 30.0)
    return pickle.loads(_read_exact(fd, length, body_expires))


def _worker_env() -> dict[str, str]:
    """The caller's environment, with this package importable even from an uninstalled
    source checkout."""
    root = str(Path(__file__).resolve().parents[2])
    paths = [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1"}


class _Worker:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "recsys.media.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_worker_env(),
        )
        assert self.process.stdout is not None
        self.fd = self.process.stdout.fileno()
        self.jobs = 0
        try:
            hello = read_message(self.fd, time.monotonic() + WORKER_START_TIMEOUT_S)
        except (TimeoutError, _WorkerGone) as error:
            self.kill()
            raise RuntimeError("the media decode worker failed to start") from error
        if hello != "ready":
            self.kill()
            raise RuntimeError(f"unexpected greeting from the media worker: {hello!r}")

    def call(self, fn: Callable[..., Any], args: tuple, expires: float | None) -> Any:
        assert self.process.stdin is not None
        self.jobs += 1
        write_message(self.process.stdin, (fn.__module__, fn.__qualname__, args))
        return read_message(self.fd, expires)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


_idle: list[_Worker] = []
_lock = threading.Lock()


def _forget_workers_after_fork() -> None:
    """A forked child must not share its parent's workers (their pipes would interleave)."""
    global _lock
    _lock = threading.Lock()
    _idle.clear()


os.register_at_fork(after_in_child=_forget_workers_after_fork)


def _acquire() -> _Worker:
    with _lock:
        while _idle:
            worker = _idle.pop()
            if worker.process.poll() is None:
                return worker
    return _Worker()


def _release(worker: _Worker) -> None:
    with _lock:
        if len(_idle) < MAX_IDLE_WORKERS and worker.jobs < MAX_JOBS_PER_WORKER:
            _idle.append(worker)
            return
    worker.kill()


@atexit.register
def shutdown_workers() -> None:
    """Stop idle decode workers (also called at interpreter exit)."""
    with _lock:
        workers, _idle[:] = list(_idle), []
    for worker in workers:
        worker.kill()


def run_isolated(
    fn: Callable[..., T], args: tuple, *, path: str | Path, timeout_s: float | None
) -> T:
    """Run module-level ``fn(*args)`` in a worker process killed after ``timeout_s`` (+ grace).

    MediaErrors raised in the worker are re-raised here unchanged.
    """
    worker = _acquire()
    expires = None if timeout_s is None else time.monotonic() + timeout_s + HARD_LIMIT_GRACE_S
    try:
        status, payload = worker.call(fn, args, expires)
    except TimeoutError:
        worker.kill()
        raise DecodeTimeout(
            path, f"decoding exceeded the time limit of {timeout_s:g} s and was killed"
        ) from None
    except (_WorkerGone, BrokenPipeError):
        code = worker.process.wait(5)
        worker.kill()
        raise CorruptMedia(path, f"the decoder crashed on this file (exit code {code})") from None
    except BaseException:
        worker.kill()
        raise
    _release(worker)
    if status == "ok":
        return payload  # type: ignore[no-any-return]
    if status == "error" and isinstance(payload, MediaError):
        raise payload
    raise CorruptMedia(path, f"unexpected decoder failure: {payload}")
