"""Per-video time and memory limits.

Time: two layers, because neither alone stops every crafted file:

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
stays alive between decodes (the interpreter and PyAV start are paid once per worker);
one that timed out or crashed is killed and replaced on the next call. Messages between the
caller and its own worker are pickles; nothing unpickles data read from media files.

Memory and threads (:class:`DecodeLimits`, from the ``RECSYS_DECODE_*`` settings): a worker
runs under an address-space limit (``RLIMIT_AS``) set before its first job, so a decoder that
allocates without bound fails with an out-of-memory error instead of taking the machine; frames
larger than ``max_pixels`` are refused before decoding and FFmpeg decodes with ``threads``
threads (:func:`recsys.media.container.open_media`). Workers are kept per set of limits.

Environment: a worker gets a minimal environment (:func:`worker_env`): the path, locale,
temporary directory and thread variables, and only the ``RECSYS_*`` settings decoding needs;
never the database URL, the admin token or anything else the caller holds. It reads media files
and returns features; it has no business with credentials.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from recsys.media.errors import CorruptMedia, DecodeTimeout, MediaError
from recsys.settings import Settings, setting_default, setting_variable

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


#: Each field of :class:`DecodeLimits` and the setting it comes from.
_SETTINGS = (
    ("memory_mb", "decode_memory_mb"),
    ("max_pixels", "decode_max_pixels"),
    ("threads", "decode_threads"),
)


@dataclass(frozen=True)
class DecodeLimits:
    """Resource limits of decoding: the ``decode_*`` settings, whose defaults and environment
    variables (``RECSYS_DECODE_*``) are declared once, on :class:`~recsys.settings.Settings`."""

    memory_mb: int = setting_default("decode_memory_mb")  # RLIMIT_AS of a worker; 0 = none
    max_pixels: int = setting_default("decode_max_pixels")  # largest declared frame, w x h
    threads: int = setting_default("decode_threads")  # FFmpeg codec threads

    @classmethod
    def from_settings(cls, settings: Settings) -> DecodeLimits:
        return cls(**{field: getattr(settings, name) for field, name in _SETTINGS})

    def as_env(self) -> dict[str, str]:
        """The variables that carry the limits to a worker."""
        return {setting_variable(name): str(getattr(self, field)) for field, name in _SETTINGS}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> DecodeLimits:
        """The limits in ``environ``, the defaults for those absent (a worker's view)."""
        values: dict[str, int] = {}
        for field, name in _SETTINGS:
            variable = setting_variable(name)
            raw = environ.get(variable)
            if raw:
                try:
                    values[field] = int(raw)
                except ValueError:
                    log.warning("ignoring %s=%r: not an integer", variable, raw)
        return cls(**values)

    def memory_reason(self) -> str:
        if self.memory_mb:
            variable = setting_variable("decode_memory_mb")
            limit = f"its memory limit of {self.memory_mb} MiB ({variable})"
        else:
            limit = "the memory available"
        return f"decoding needed more than {limit}; the file is damaged or crafted"


_process_limits = DecodeLimits()
_memory_limited = False  # has this process set RLIMIT_AS (a decode worker)?


def process_limits() -> DecodeLimits:
    """The limits this process decodes under: a decode worker's own (set when it started),
    else the defaults. Decoding functions use them when the caller passes no limits."""
    return _process_limits


def out_of_memory_reason() -> str:
    """Why a decode in this process ran out of memory, naming the limit where one is set."""
    return (_process_limits if _memory_limited else DecodeLimits(memory_mb=0)).memory_reason()


def apply_worker_limits(limits: DecodeLimits) -> None:
    """Enter ``limits`` in this process for good (a decode worker, before its first job):
    the address-space limit (soft and hard, so no job can lift it) and the decode defaults."""
    global _process_limits, _memory_limited
    _process_limits = limits
    if limits.memory_mb > 0:
        _memory_limited = True
        import resource

        wanted = limits.memory_mb * 1024 * 1024
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            wanted = min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_AS, (wanted, wanted))


#: Variables a decode worker inherits when the caller has them: the executable search path,
#: the locale, temporary files, library search paths, thread pools, caches of numba/torch
#: and the GPU selection; coverage measurement of tests. Everything else stays behind.
_WORKER_VARIABLES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TEMP",
        "TMP",
        "LD_LIBRARY_PATH",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
        "NUMBA_CACHE_DIR",
        "NUMBA_NUM_THREADS",
        "TORCH_HOME",
        "XDG_CACHE_HOME",
        "CUDA_VISIBLE_DEVICES",
        "PYTHONHASHSEED",
        "PYTHONDONTWRITEBYTECODE",
        "COVERAGE_PROCESS_START",
    }
)
_WORKER_PREFIXES = ("LC_", "COV_CORE_")
#: The settings a worker reads (extractors load theirs from the home); never a secret.
_WORKER_SETTINGS = frozenset(
    setting_variable(name)
    for name in (
        "home",
        "device",
        "feature_extractor",
        "frames_per_video",
        "frame_size",
        "audio_sample_rate",
        "decode_timeout_s",
    )
)
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


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


def worker_env(limits: DecodeLimits, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The minimal environment of a decode worker (see the module docstring): the allowed
    variables of ``environ`` (default: this process's), the limits, this package importable
    even from an uninstalled source checkout, and one thread per library unless the caller
    chose otherwise."""
    source = os.environ if environ is None else environ
    env = {
        name: value
        for name, value in source.items()
        if name in _WORKER_VARIABLES
        or name in _WORKER_SETTINGS
        or name.startswith(_WORKER_PREFIXES)
    }
    root = str(Path(__file__).resolve().parents[2])
    paths = [root, *filter(None, source.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    for variable in _THREAD_VARIABLES:
        env.setdefault(variable, str(limits.threads))
    env.update(limits.as_env())
    return env


class _Worker:
    def __init__(self, limits: DecodeLimits) -> None:
        self.limits = limits
        self.process = subprocess.Popen(
            [sys.executable, "-m", "recsys.media.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=worker_env(limits),
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


def _acquire(limits: DecodeLimits) -> _Worker:
    """An idle worker started under ``limits`` (the most recently used), else a new one."""
    found = None
    dead: list[_Worker] = []
    with _lock:
        for worker in reversed(_idle):
            if worker.process.poll() is not None:
                dead.append(worker)
            elif worker.limits == limits:
                found = worker
                break
        for worker in [*dead, *([found] if found else [])]:
            _idle.remove(worker)
    for worker in dead:
        worker.kill()
    return found or _Worker(limits)


def _release(worker: _Worker) -> None:
    """Keep ``worker`` for reuse; beyond ``MAX_IDLE_WORKERS`` the longest idle one exits."""
    if worker.jobs >= MAX_JOBS_PER_WORKER:
        worker.kill()
        return
    with _lock:
        _idle.append(worker)
        surplus = _idle.pop(0) if len(_idle) > MAX_IDLE_WORKERS else None
    if surplus is not None:
        surplus.kill()


@atexit.register
def shutdown_workers() -> None:
    """Stop idle decode workers (also called at interpreter exit)."""
    with _lock:
        workers, _idle[:] = list(_idle), []
    for worker in workers:
        worker.kill()


def run_isolated(
    fn: Callable[..., T],
    args: tuple,
    *,
    path: str | Path,
    timeout_s: float | None,
    limits: DecodeLimits | None = None,
) -> T:
    """Run module-level ``fn(*args)`` in a worker process killed after ``timeout_s`` (+ grace),
    under ``limits`` (default: the defaults of the settings).

    MediaErrors raised in the worker are re-raised here unchanged; running out of the memory
    limit is a ``CorruptMedia`` saying so (and the worker is replaced).
    """
    limits = limits or DecodeLimits()
    worker = _acquire(limits)
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
    if status == "memory":
        worker.kill()  # native code may have been left half-way: start afresh
        raise CorruptMedia(path, limits.memory_reason())
    _release(worker)
    if status == "ok":
        return payload  # type: ignore[no-any-return]
    if status == "error" and isinstance(payload, MediaError):
        raise payload
    raise CorruptMedia(path, f"unexpected decoder failure: {payload}")
