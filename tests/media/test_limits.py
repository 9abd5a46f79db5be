"""Decode limits: the one opener refuses what it must not read, decode workers run under a
memory limit with a minimal environment."""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from recsys import media
from recsys.media.container import ALLOWED_DEMUXERS
from recsys.media.limits import DecodeLimits, run_isolated, worker_env
from recsys.settings import load_settings
from recsys.stage_a import FeatureSpec, extract_features
from recsys.synth import write_test_video
from tests.media.crafted import write_concat_list, write_hls_playlist, write_huge_declared_avi

MIB = 1024 * 1024


def allocate(n_bytes: int) -> int:
    """Reserve ``n_bytes`` without touching them (runs in a decode worker)."""
    return int(np.empty(n_bytes, dtype=np.uint8).size)


def _bounded(fn: Callable[[], object], seconds: float = 20.0) -> object:
    """``fn()`` in a daemon thread: a regression that blocks fails here instead of hanging."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_test_video(tmp_path / "clip.mp4", seconds=1.0, width=64, height=48)


def _spec(**limits: int) -> FeatureSpec:
    return FeatureSpec("content", "unused", 4, 32, 16000, 30.0, limits=DecodeLimits(**limits))


# ---------------------------------------------------------------------------- frame size


def test_a_huge_declared_frame_size_is_refused_before_decoding(tmp_path: Path) -> None:
    huge = write_huge_declared_avi(tmp_path / "huge.avi", 12000, 12000)
    assert huge.stat().st_size < 20_000
    for attempt in (
        lambda: media.probe(huge),
        lambda: media.decode_video(huge, num_frames=4, size=16, timeout_s=30),
        lambda: media.inspect_video(huge, timeout_s=30),
        lambda: extract_features(str(huge), _spec()),  # what POST /similar/upload runs
    ):
        with pytest.raises(media.UnsupportedMedia) as caught:
            attempt()
        reason = caught.value.reason
        assert "12000x12000" in reason and "RECSYS_DECODE_MAX_PIXELS" in reason, reason
        assert str(huge) in str(caught.value)


def test_the_pixel_limit_is_a_setting(clip: Path) -> None:
    assert load_settings(decode_max_pixels=64 * 48).decode_max_pixels == 64 * 48
    ok = DecodeLimits.from_settings(load_settings(decode_max_pixels=64 * 48))
    assert media.probe(clip, ok).width == 64
    small = DecodeLimits(max_pixels=64 * 48 - 1)
    with pytest.raises(media.UnsupportedMedia, match="64x48"):
        media.probe(clip, small)
    with pytest.raises(media.UnsupportedMedia, match="64x48"):
        extract_features(str(clip), _spec(max_pixels=64 * 48 - 1))  # in the decode worker


def test_decoders_use_the_thread_count_and_pixel_limit(clip: Path) -> None:
    from recsys.media.container import open_media

    for limits, threads in ((None, 1), (DecodeLimits(threads=3), 3)):
        with open_media(clip, limits) as container:
            context = container.streams.video[0].codec_context
            assert context.thread_count == threads
            assert context.options["max_pixels"] == str((limits or DecodeLimits()).max_pixels)
            assert container.streams.audio[0].codec_context.thread_count == threads
            assert next(container.decode(video=0)).width == 64


# ---------------------------------------------------------------------- demuxer whitelist


def test_playlists_and_concat_lists_are_refused(tmp_path: Path, clip: Path) -> None:
    crafted = {
        "concat": write_concat_list(tmp_path / "list.mp4", clip),
        "hls": write_hls_playlist(tmp_path / "playlist.m3u8"),
    }
    for path in crafted.values():
        attempts = (
            lambda p=path: media.probe(p),
            lambda p=path: media.decode_video(p, num_frames=4, size=16, timeout_s=30),
            lambda p=path: extract_features(str(p), _spec()),
        )
        for attempt in attempts:
            with pytest.raises(media.UnsupportedMedia, match="container format is not allowed"):
                attempt()
    # The containers real videos use still open.
    for suffix in (".mp4", ".mkv", ".ts", ".mov"):
        video = write_test_video(tmp_path / f"ok{suffix}", seconds=0.5, width=32, height=24)
        assert media.probe(video).width == 32, suffix
    assert "hls" not in ALLOWED_DEMUXERS and "concat" not in ALLOWED_DEMUXERS


def test_urls_and_protocol_prefixes_are_not_opened(tmp_path: Path, clip: Path) -> None:
    with pytest.raises(media.MediaNotFound):
        media.probe("http://127.0.0.1:9/clip.mp4")
    # A local file whose name looks like an FFmpeg protocol is read as that file.
    odd = tmp_path / "concat:x.mp4"
    odd.write_bytes(clip.read_bytes())
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert media.probe("concat:x.mp4").width == 64
    finally:
        os.chdir(cwd)


# ------------------------------------------------------------------- special files


@pytest.mark.parametrize("kind", ["fifo", "character device"])
def test_special_files_are_refused_without_reading(tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        path = tmp_path / "pipe.mp4"
        os.mkfifo(path)
        expected = "FIFO"
    else:
        path = Path("/dev/zero")
        expected = "character device"
    for attempt in (
        lambda: media.content_hash(path),
        lambda: media.probe(path),
        lambda: media.inspect_video(path, timeout_s=30),
    ):
        with pytest.raises(media.UnsupportedMedia, match=expected):
            _bounded(attempt)


# ---------------------------------------------------------------------- memory limit


def test_decode_workers_run_under_the_memory_limit(clip: Path) -> None:
    limits = DecodeLimits(memory_mb=1536)
    soft, hard = run_isolated(
        resource.getrlimit, (resource.RLIMIT_AS,), path="<limit>", timeout_s=60, limits=limits
    )
    assert soft == hard == 1536 * MIB
    # Decoding works under it; an allocation beyond it fails in the worker, not the machine.
    decoded = media.decode_video(clip, num_frames=4, size=16, timeout_s=30, limits=limits)
    assert decoded.frames.shape == (4, 16, 16, 3)
    with pytest.raises(media.CorruptMedia, match="memory limit of 1536 MiB"):
        run_isolated(allocate, (4096 * MIB,), path=clip, timeout_s=60, limits=limits)
    # The worker that ran out was replaced: the next job works.
    assert run_isolated(allocate, (16 * MIB,), path=clip, timeout_s=60, limits=limits) == 16 * MIB


def test_the_memory_limit_is_a_setting_and_zero_turns_it_off() -> None:
    settings = load_settings(decode_memory_mb=0, decode_threads=2)
    limits = DecodeLimits.from_settings(settings)
    assert (limits.memory_mb, limits.threads) == (0, 2)
    soft, _ = run_isolated(
        resource.getrlimit, (resource.RLIMIT_AS,), path="<limit>", timeout_s=60, limits=limits
    )
    assert soft == resource.getrlimit(resource.RLIMIT_AS)[0]  # the caller's, unchanged
    spec = FeatureSpec.for_model(load_settings(decode_memory_mb=1234), "content", "1")
    assert spec.limits is not None and spec.limits.memory_mb == 1234
    assert DecodeLimits() == DecodeLimits.from_settings(load_settings())  # one set of defaults


# ------------------------------------------------------------- the worker's environment

SECRETS = {
    "RECSYS_ADMIN_TOKEN": "admin-secret",
    "RECSYS_API_ADMIN_TOKEN": "api-admin-secret",
    "RECSYS_DATABASE_URL": "postgresql+psycopg://user:password@db.internal/recsys",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "PGPASSWORD": "pg-secret",
}


def test_the_decode_worker_gets_a_minimal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RECSYS_FRAME_SIZE", "96")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    limits = DecodeLimits(threads=3)  # workers are kept per limits: this one starts now

    def seen(name: str) -> str | None:
        return run_isolated(os.getenv, (name,), path="<env>", timeout_s=60, limits=limits)

    for name in SECRETS:
        assert seen(name) is None, name
    assert seen("PATH") == os.environ["PATH"]
    assert seen("RECSYS_FRAME_SIZE") == "96"  # settings decoding needs do travel
    assert seen("RECSYS_DECODE_THREADS") == "3"
    assert seen("OMP_NUM_THREADS") == "3"


def test_worker_env_keeps_only_what_decoding_needs() -> None:
    caller = {
        **SECRETS,
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "TMPDIR": "/scratch",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "RECSYS_HOME": "/srv/recsys",
        "RECSYS_UPLOAD_MAX_BYTES": "1",
        "SOME_TOKEN": "x",
        "OMP_NUM_THREADS": "4",
        "PYTHONPATH": "/extra",
    }
    env = worker_env(DecodeLimits(memory_mb=512, max_pixels=100, threads=2), caller)
    assert not set(SECRETS) & set(env)
    assert "SOME_TOKEN" not in env and "RECSYS_UPLOAD_MAX_BYTES" not in env
    for name in ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "RECSYS_HOME"):
        assert env[name] == caller[name]
    assert env["OMP_NUM_THREADS"] == "4"  # the caller's choice wins
    assert env["MKL_NUM_THREADS"] == "2"
    assert env["PYTHONPATH"].split(os.pathsep)[1:] == ["/extra"]
    assert (env["RECSYS_DECODE_MEMORY_MB"], env["RECSYS_DECODE_MAX_PIXELS"]) == ("512", "100")


def test_the_limits_are_the_decode_settings() -> None:
    """Defaults, values and variables come from the settings; a worker reads back what it got."""
    assert DecodeLimits() == DecodeLimits.from_settings(load_settings())
    chosen = DecodeLimits.from_settings(
        load_settings(decode_memory_mb=256, decode_max_pixels=640 * 480, decode_threads=3)
    )
    assert chosen == DecodeLimits(memory_mb=256, max_pixels=640 * 480, threads=3)
    assert DecodeLimits.from_env(chosen.as_env()) == chosen
    assert DecodeLimits.from_env({"RECSYS_DECODE_THREADS": "two"}) == DecodeLimits()
