"""The CLI's contract: choices from ``recsys.choices``, defaults from the config dataclasses,
``RecsysError`` → one line and exit 1 (anything else keeps its traceback), old spellings that
still work for one release."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import index
import orchestration.cli.status as status_cli
import orchestration.cli.synth as synth_cli
import orchestration.demo
import recsys.models.registry
import recsys.refresh
import training
import training.protocol
from index import BuildOptions
from orchestration.cli.common import choices_metavar
from orchestration.cli.main import app
from orchestration.demo import DemoOptions
from recsys.choices import Combine, Engine, Fusion, GpuMode, IndexKind, Loss, PairSource
from recsys.db import Database
from recsys.errors import UserError
from recsys.refresh import RefreshOptions
from recsys.synth import generate_corpus
from training import TrainConfig

CHOICES: dict[tuple[str, ...], dict[str, type[StrEnum]]] = {
    ("train",): {"--fusion": Fusion, "--pairs": PairSource, "--loss": Loss, "--combine": Combine},
    ("index", "build"): {"--kind": IndexKind, "--gpu": GpuMode},
    ("embed",): {"--engine": Engine},
    ("demo",): {"--fusion": Fusion},
}
EVERY_COMMAND = [
    ("db", "upgrade"),
    ("synth",),
    ("ingest",),
    ("status",),
    ("train",),
    ("eval",),
    ("models", "list"),
    ("models", "activate"),
    ("embed",),
    ("index", "build"),
    ("index", "list"),
    ("index", "info"),
    ("index", "activate"),
    ("index", "update"),
    ("serve",),
    ("demo",),
]
STOP = "stopped by the test"


def _invoke(home: Path, *args: str) -> Result:
    env = {"RECSYS_DATABASE_URL": "", "COLUMNS": "200"}
    return CliRunner().invoke(app, [*args, "--home", str(home)], env=env)


def _flat(text: str) -> str:
    return " ".join(text.split())


def _stop_at(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> dict[str, Any]:
    """Replace ``owner.name`` by a function that records its call and raises a UserError."""
    seen: dict[str, Any] = {}

    def fake(*args: Any, **kwargs: Any) -> Any:
        seen["args"], seen["kwargs"] = args, kwargs
        raise UserError(STOP)

    monkeypatch.setattr(owner, name, fake)
    return seen


def _stopped(result: Result) -> None:
    assert result.exit_code == 1, result.output
    assert f"error: {STOP}" in result.stderr


@pytest.fixture
def disposed(monkeypatch: pytest.MonkeyPatch) -> list[Database]:
    """Every Database.dispose() call of the test, in order."""
    calls: list[Database] = []
    original = Database.dispose

    def dispose(self: Database) -> None:
        calls.append(self)
        original(self)

    monkeypatch.setattr(Database, "dispose", dispose)
    return calls


@pytest.mark.parametrize("command", list(CHOICES), ids=" ".join)
def test_help_lists_every_choice(command: tuple[str, ...], tmp_path: Path) -> None:
    result = _invoke(tmp_path, *command, "--help")
    assert result.exit_code == 0, result.output
    rows = [line.strip("│ ") for line in result.stdout.splitlines()]
    for option, kind in CHOICES[command].items():
        (row,) = [r for r in rows if r.startswith(f"{option} ")]
        assert choices_metavar(kind) in row, row  # e.g. <auto|flat|ivfflat|ivfsq|ivfpq|hnsw>


@pytest.mark.parametrize(
    ("command", "option", "kind"),
    [
        pytest.param(c, o, k, id=f"{' '.join(c)} {o}")
        for c, options in CHOICES.items()
        for o, k in options.items()
    ],
)
def test_a_wrong_choice_exits_2_with_the_allowed_values(
    command: tuple[str, ...], option: str, kind: type[StrEnum], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    result = _invoke(home, *command, option, "bogus")
    assert result.exit_code == 2, result.output
    message = _flat(result.output)
    assert f"Invalid value for '{option}'" in message
    assert all(member.value in message for member in kind), message
    assert not home.exists()  # refused before the command ran: nothing opened


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=" ".join)
def test_every_help_renders_its_defaults(command: tuple[str, ...], tmp_path: Path) -> None:
    result = _invoke(tmp_path, *command, "--help")
    assert result.exit_code == 0, result.output


def test_train_defaults_are_train_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = _stop_at(monkeypatch, training, "train_model")
    _stopped(_invoke(tmp_path, "train"))
    assert seen["args"][2] == TrainConfig()
    # Read from the dataclass when the command runs, not copied into the CLI.
    monkeypatch.setattr(TrainConfig.__dataclass_fields__["epochs"], "default", 7)
    _stopped(_invoke(tmp_path, "train"))
    assert seen["args"][2].epochs == 7
    assert "[default: 7]" in _invoke(tmp_path, "train", "--help").stdout
    _stopped(
        _invoke(tmp_path, "train", "--fusion", "early", "--pairs", "self", "--loss", "infonce")
    )
    config = seen["args"][2]
    assert (config.fusion, config.pairs, config.loss) == (
        Fusion.EARLY,
        PairSource.SELF,
        Loss.INFONCE,
    )
    _stopped(_invoke(tmp_path, "train", "--pairs", "related", "--self-weight", "0.5"))
    assert seen["args"][2].self_weight == 0.5
    assert _invoke(tmp_path, "train", "--self-weight", "-1").exit_code == 2


def test_embed_index_and_demo_defaults_are_their_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen = _stop_at(monkeypatch, recsys.refresh, "run_refresh")
    # embed refuses a home with no active model before it reaches the refresh
    monkeypatch.setattr(recsys.models.registry, "active_model_version", lambda database: "v1")
    _stopped(_invoke(tmp_path, "embed"))
    assert seen["args"][2] == RefreshOptions()
    seen = _stop_at(monkeypatch, index, "build_index")
    _stopped(_invoke(tmp_path, "index", "build"))
    assert seen["args"][2] == BuildOptions()
    seen = _stop_at(monkeypatch, orchestration.demo, "run_demo")
    _stopped(_invoke(tmp_path, "demo", "--no-serve"))
    assert seen["args"][2] == DemoOptions()


def test_a_recsys_error_is_one_line_exit_1_and_the_database_is_disposed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, disposed: list[Database]
) -> None:
    message = "the catalog cannot be read: " + "very " * 30 + "long; run `recsys db upgrade`"

    def broken(*args: object) -> None:
        raise UserError(message)

    monkeypatch.setattr(status_cli, "catalog_status", broken)
    result = _invoke(tmp_path, "status", "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"error: {message}"]  # one line, never wrapped
    assert len(disposed) == 1


@pytest.mark.parametrize(
    "bug", [ZeroDivisionError("division by zero"), RuntimeError("CUDA out of memory")]
)
def test_a_bug_is_not_swallowed(
    bug: Exception, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, disposed: list[Database]
) -> None:
    def broken(*args: object) -> None:
        raise bug

    monkeypatch.setattr(status_cli, "catalog_status", broken)
    result = _invoke(tmp_path, "status")
    assert result.exception is bug  # the traceback is the user's (and ours)
    assert "error:" not in result.output
    assert len(disposed) == 1  # still disposed
    # Training used to print any ValueError as a message; a plain one is a bug now.
    shape = ValueError("mat1 and mat2 shapes cannot be multiplied")

    def train_model(*args: object) -> None:
        raise shape

    monkeypatch.setattr(training, "train_model", train_model)
    assert _invoke(tmp_path, "train").exception is shape


def test_synth_count_and_the_old_videos_spelling(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake(out: Path, *args: Any, **kwargs: Any) -> SimpleNamespace:
        calls.append(args)
        return SimpleNamespace(videos=[], topics=[], pairs=[], manifest=out, cowatch=out)

    monkeypatch.setattr(synth_cli, "generate_corpus", fake)
    out = str(tmp_path / "corpus")
    assert _invoke(tmp_path, "synth", out).exit_code == 0
    assert calls[-1][0] == inspect.signature(generate_corpus).parameters["videos"].default
    result = _invoke(tmp_path, "synth", out, "--count", "3")
    assert result.exit_code == 0 and "deprecated" not in result.output
    assert calls[-1][0] == 3
    result = _invoke(tmp_path, "synth", out, "--videos", "2")
    assert result.exit_code == 0, result.output
    assert calls[-1][0] == 2
    assert "deprecated: --videos 2 is now --count 2" in _flat(result.stderr)
    both = _invoke(tmp_path, "synth", out, "--count", "3", "--videos", "2")
    assert both.exit_code == 2 and "give --count only" in _flat(both.output)


def test_demo_videos_dir_and_the_old_videos_spelling(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen = _stop_at(monkeypatch, orchestration.demo, "run_demo")
    videos = tmp_path / "videos"
    result = _invoke(tmp_path, "demo", "--no-serve", "--videos-dir", str(videos))
    _stopped(result)
    assert "deprecated" not in result.output
    assert seen["args"][2].videos_dir == videos
    result = _invoke(tmp_path, "demo", "--no-serve", "--videos", str(videos))
    _stopped(result)
    assert seen["args"][2].videos_dir == videos
    assert f"deprecated: --videos {videos} is now --videos-dir {videos}" in _flat(result.stderr)
    both = _invoke(tmp_path, "demo", "--videos-dir", str(videos), "--videos", str(videos))
    assert both.exit_code == 2 and "give --videos-dir only" in _flat(both.output)


def test_index_kind_factory_and_the_old_kind_factory_spelling(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen = _stop_at(monkeypatch, index, "build_index")
    for given, kind in (("ivfsq", IndexKind.IVFSQ), ("HNSW", IndexKind.HNSW)):
        result = _invoke(tmp_path, "index", "build", "--kind", given)
        _stopped(result)
        assert "deprecated" not in result.output
        assert (seen["args"][2].kind, seen["args"][2].factory) == (kind, None)
    result = _invoke(tmp_path, "index", "build", "--factory", "IVF64,SQ8")
    _stopped(result)
    assert "deprecated" not in result.output
    assert (seen["args"][2].kind, seen["args"][2].factory) == (IndexKind.AUTO, "IVF64,SQ8")
    result = _invoke(tmp_path, "index", "build", "--kind", "IVF64,SQ8")
    _stopped(result)
    assert "deprecated: --kind IVF64,SQ8 is now --factory IVF64,SQ8" in _flat(result.stderr)
    assert (seen["args"][2].kind, seen["args"][2].factory) == (IndexKind.AUTO, "IVF64,SQ8")
    twice = _invoke(tmp_path, "index", "build", "--kind", "IVF64,SQ8", "--factory", "Flat")
    assert twice.exit_code == 2 and "--factory" in _flat(twice.output)


def test_eval_json_is_a_flag_and_the_old_json_path_spelling(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    report = {
        "model_version": "m1",
        "model": {"precision@1": 0.5, "precision@5": 0.4, "map": 0.3},
        "same_source": {"model": 0.9},
    }
    monkeypatch.setattr(training.protocol, "evaluate_manifest", lambda *a, **k: report)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("file,category\n", encoding="utf-8")
    base = ("eval", "--manifest", str(manifest))

    quiet = _invoke(tmp_path, *base)
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stdout == "" and "P@1 0.500" in quiet.stderr
    printed = _invoke(tmp_path, *base, "--json", "--in-home")
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.stdout) == report and "deprecated" not in printed.output
    out = tmp_path / "a" / "report.json"
    written = _invoke(tmp_path, *base, "-o", str(out))
    assert written.exit_code == 0, written.output
    assert written.stdout == "" and json.loads(out.read_text()) == report
    for old in (["--json", str(out)], [f"--json={out}"]):
        out.unlink()
        result = _invoke(tmp_path, *base, *old)  # the old spelling: file and stdout, as before
        assert result.exit_code == 0, result.output
        assert json.loads(out.read_text()) == report and json.loads(result.stdout) == report
        assert f"is now --json --output {out}" in _flat(result.stderr)


def test_light_commands_import_neither_torch_nor_faiss(tmp_path: Path) -> None:
    """Defaults are read when a command runs, so `recsys status` stays quick to start."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from orchestration.cli.main import app\n"
        f"result = CliRunner().invoke(app, ['status', '--json', '--home', {str(tmp_path)!r}])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in ('torch', 'faiss') if m in sys.modules))\n"
    )
    env = {"RECSYS_DATABASE_URL": "", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
