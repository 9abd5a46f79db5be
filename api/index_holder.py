"""The live index holder: one reference to the served state, swapped atomically.

A background thread polls the ``CURRENT`` pointer (every ``settings.index_poll_s``) and keeps the
catalog snapshot fresh; ``/admin/reload`` asks for the same check at once. A new index is loaded
with its metadata entirely off the request path and then published by one attribute assignment,
so a request either sees the old state or the new one, and keeps the one it started with. The
old state is released by dropping the last reference (plus a ``gc.collect``), so only two
indexes are in memory for the few seconds a swap takes.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import index as index_pkg
from api import metrics
from api.config import ApiOptions
from api.errors import ServiceUnavailable
from recsys.db import Database
from recsys.settings import Settings
from serving.state import ServingState, build_state

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0


@dataclass
class ReloadOutcome:
    changed: bool
    state: ServingState | None
    detail: str | None = None


class IndexHolder:
    """Owns the served :class:`ServingState` of this worker and the thread that renews it."""

    def __init__(self, settings: Settings, database: Database, options: ApiOptions) -> None:
        self.settings = settings
        self.database = database
        self.options = options
        self._state: ServingState | None = None
        self.last_error: str | None = None
        self._load_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed_version: str | None = None
        self._retry_at = 0.0
        self._failures = 0
        self._embedder: Any = None
        self._embedder_lock = threading.Lock()

    # ------------------------------------------------------------------ reading
    @property
    def state(self) -> ServingState | None:
        return self._state

    def require_state(self) -> ServingState:
        """The served state, or :class:`ServiceUnavailable` with the reason there is none."""
        state = self._state
        if state is None:
            raise ServiceUnavailable(self.unavailable_reason())
        return state

    def unavailable_reason(self) -> str:
        if self.last_error:
            return f"no index is loaded: {self.last_error}"
        return "no index is loaded yet"

    # ------------------------------------------------------------------ loading
    def reload(self, *, force: bool = False) -> ReloadOutcome:
        """Load the published version if it differs from the served one (or ``force``)."""
        with self._load_lock:
            try:
                wanted = index_pkg.current_version(self.settings)
            except OSError as error:
                self.last_error = f"cannot read the index pointer: {error}"
                return ReloadOutcome(False, self._state, self.last_error)
            current = self._state
            if wanted is None:
                if current is None:
                    self.last_error = (
                        f"nothing is published under {self.settings.indexes_dir}; "
                        "run `recsys index build`"
                    )
                return ReloadOutcome(False, current, self.last_error)
            if current is not None and current.index_version == wanted and not force:
                return ReloadOutcome(False, current, None)
            if not force and wanted == self._failed_version and time.monotonic() < self._retry_at:
                return ReloadOutcome(False, current, self.last_error)
            return self._load(wanted)

    def _load(self, wanted: str) -> ReloadOutcome:
        start = time.perf_counter()
        try:
            # The version read from the pointer, not the pointer again: a publish in between
            # is picked up by the next reload, and failures are charged to the right version.
            loaded = index_pkg.load_index(
                index_pkg.version_dir(self.settings, wanted),
                gpu=self.options.gpu,
                mmap=self.settings.index_mmap,
                verify=self.settings.index_verify,
            )
            previous = self._state.catalog if self._state is not None else None
            new_state = build_state(self.settings, self.database, loaded, previous)
        except Exception as error:  # noqa: BLE001 - keep serving the old state, retry later
            self._failures = self._failures + 1 if self._failed_version == wanted else 1
            self._failed_version = wanted
            self._retry_at = time.monotonic() + min(MAX_BACKOFF_S, 2.0 ** (self._failures - 1))
            self.last_error = f"loading index {wanted} failed: {error}"
            log.warning(
                "%s (still serving %s)",
                self.last_error,
                self._state.index_version if self._state else "nothing",
            )
            metrics.INDEX_LOAD_FAILURES.inc()
            return ReloadOutcome(False, self._state, self.last_error)
        old = self._state
        self._state = new_state  # the swap: one reference assignment
        self._failed_version = None
        self._failures = 0
        self.last_error = None
        seconds = time.perf_counter() - start
        metrics.record_swap(old, new_state, seconds)
        log.info(
            "serving index %s (model %s, %d vectors, %d catalog rows) loaded in %.2fs",
            new_state.index_version,
            new_state.model_version,
            new_state.ntotal,
            len(new_state.catalog),
            seconds,
        )
        del old
        # Free the old index (cycles included), then move the long-lived catalog and index
        # objects out of the collector's sight: full collections would otherwise walk
        # millions of objects and stall requests for milliseconds.
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        return ReloadOutcome(True, new_state, None)

    def refresh_metadata(self) -> int:
        """Pull changed catalog rows into the served snapshot; -1 when the DB is unreachable."""
        state = self._state
        if state is None:
            return 0
        try:
            with self.database.session() as session:
                return state.catalog.refresh(session)
        except Exception as error:  # noqa: BLE001 - the snapshot stays as it was
            log.warning("catalog refresh failed (serving the last snapshot): %s", error)
            return -1

    # ------------------------------------------------------------- the embedder
    def embedder(self, model_version: str) -> Any:
        """The stage-B model of the served index, loaded once per model version."""
        with self._embedder_lock:
            if self._embedder is None or self._embedder.version != model_version:
                from recsys.models import load_embedder

                self._embedder = None
                self._embedder = load_embedder(self.settings, self.database, model_version)
            return self._embedder

    # ------------------------------------------------------------------ watching
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="index-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        poll = max(0.05, float(self.settings.index_poll_s))
        next_refresh = time.monotonic() + self.options.metadata_refresh_s
        while not self._stop.is_set():
            self._wake.wait(poll)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                outcome = self.reload()
                if not outcome.changed and time.monotonic() >= next_refresh:
                    next_refresh = time.monotonic() + self.options.metadata_refresh_s
                    self.refresh_metadata()
            except Exception:  # noqa: BLE001 - the watcher must never die
                log.exception("index watcher iteration failed")
