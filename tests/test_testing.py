"""The server helpers shared by tests and benchmarks: a free port, waiting, stopping."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading

import pytest

from recsys.testing import free_port, stop_process, wait_ready


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_wait_ready_returns_once_the_url_answers() -> None:
    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/readyz" else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", free_port()), Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        assert wait_ready(base + "/readyz", timeout=10) >= 0.0
        with pytest.raises(RuntimeError, match="not ready after 0.3 s"):
            wait_ready(base + "/other", timeout=0.3, interval=0.05)
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_wait_ready_reports_a_server_that_exits() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stderr.write('port in use'); sys.exit(3)"],
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{free_port()}/readyz"
    with pytest.raises(RuntimeError, match=r"exited with 3 (.|\n)*port in use"):
        wait_ready(url, process, timeout=30, interval=0.05)


def test_stop_process_ends_the_whole_group() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    stop_process(process, timeout=10)
    assert process.returncode is not None
    stop_process(process)  # already gone: nothing to do
