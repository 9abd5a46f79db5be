"""The one progress helper: a bar on a terminal, log lines (at the asked cadence) otherwise."""

from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console

from recsys.progress import Progress, steps, track


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_track_logs_about_ten_lines_and_the_last(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        assert list(track(range(25), 25, "features", logger=logging.getLogger("t"))) == list(
            range(25)
        )
    # every 25 // 10 = 2 items, and the 25th
    expected = [f"features: {n}/25" for n in [*range(2, 25, 2), 25]]
    assert _messages(caplog) == expected


def test_track_disabled_or_empty_shows_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        assert list(track(iter([1, 2]), 2, "x", enabled=False)) == [1, 2]
        assert list(track(iter([]), 0, "x")) == []
    assert caplog.records == []


def test_unknown_total_logs_every_n_items(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    quiet = Console(file=io.StringIO())  # not a terminal: log lines
    with Progress("ingest", unit="items", console=quiet, log_every=2) as progress:
        for _ in range(5):
            progress.advance()
    assert _messages(caplog) == ["ingest: 2 items processed", "ingest: 4 items processed"]
    assert quiet.file.getvalue() == ""  # type: ignore[attr-defined]


def test_update_sets_a_running_count(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    quiet = Console(file=io.StringIO())
    with Progress("synth", 5, unit="videos", console=quiet, log_every=2) as progress:
        for done in range(1, 6):
            progress.update(done)
    assert progress.done == 5
    assert _messages(caplog) == ["synth: 2/5 videos", "synth: 4/5 videos", "synth: 5/5 videos"]


def test_batches_that_jump_past_a_step_still_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO), Progress("x", 10, bar=False, log_every=4) as progress:
        progress.advance(3)
        progress.advance(3)  # crosses 4
        progress.advance(4)  # crosses 8 and reaches the total
    assert _messages(caplog) == ["x: 6/10", "x: 10/10"]


def test_failures_and_rate_in_periodic_lines(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.INFO),
        Progress(
            "embed v1", 4, unit="videos", bar=False, log_every_s=0.0, failures=True, verb="embed"
        ) as progress,
    ):
        progress.advance(3)
        progress.advance(1, failed=1)
    lines = _messages(caplog)
    assert lines[0] == "embed v1: 4 videos to embed"
    assert lines[1].startswith("embed v1: 3/4 videos (") and lines[1].endswith("/s), 0 failed")
    assert lines[2].endswith("/s), 1 failed")
    assert lines[3].startswith("embed v1: 4/4 videos in ") and lines[3].endswith(" s, 1 failed")
    assert (progress.done, progress.failed) == (4, 1)


def test_a_terminal_gets_a_bar_and_no_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    out = io.StringIO()
    terminal = Console(file=out, force_terminal=True, width=100)
    with (
        caplog.at_level(logging.INFO),
        Progress(
            "embed v1", 2, unit="videos", console=terminal, transient=False, failures=True
        ) as progress,
    ):
        progress.advance(2, failed=1)
    assert caplog.records == []
    shown = out.getvalue()
    assert "embed v1" in shown and "2/2" in shown and "failed 1" in shown


def test_steps_spinner_or_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.INFO),
        steps("indexing…", console=Console(file=io.StringIO())) as show,
    ):
        show("training the quantizer")
    assert _messages(caplog) == ["training the quantizer"]
    out = io.StringIO()
    terminal = Console(file=out, force_terminal=True, width=100)
    with steps("indexing…", console=terminal) as show:
        show("adding vectors")
    assert "adding vectors" in out.getvalue()
