"""Helpers for tests and benchmarks that run real servers: a free port, waiting until a server
answers, and stopping its process group. Standard library only."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _exit_message(process: subprocess.Popen, url: str) -> str:
    message = f"server exited with {process.returncode} before {url} answered"
    if process.stderr is not None:
        output = process.stderr.read()
        text = output if isinstance(output, str) else output.decode(errors="replace")
        message += ":\n" + text[-3000:]
    return message


def wait_ready(
    url: str,
    process: subprocess.Popen | None = None,
    *,
    timeout: float = 60.0,
    interval: float = 0.25,
) -> float:
    """Poll ``url`` until it answers 200; the seconds that took.

    Raises :class:`RuntimeError` when ``process`` exits first (with its standard error when
    that is a pipe) or after ``timeout`` seconds.
    """
    start = time.monotonic()
    while True:
        if _answers(url):
            return time.monotonic() - start
        if process is not None and process.poll() is not None:
            raise RuntimeError(_exit_message(process, url))
        if time.monotonic() - start >= timeout:
            raise RuntimeError(f"{url} not ready after {timeout:g} s")
        time.sleep(interval)


def stop_process(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM the process group of ``process`` (started with ``start_new_session=True``);
    SIGKILL it when it has not exited after ``timeout`` seconds."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return  # the whole group is gone already
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
