"""Offline embedding refresh: incremental, resumable, parallel (local processes or Ray)."""

from recsys.refresh.errors import RefreshError
from recsys.refresh.job import run_refresh, select_tasks
from recsys.refresh.options import Failure, RefreshOptions, RefreshSummary, default_workers

__all__ = [
    "Failure",
    "RefreshError",
    "RefreshOptions",
    "RefreshSummary",
    "default_workers",
    "run_refresh",
    "select_tasks",
]
