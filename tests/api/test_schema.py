"""schemathesis against the app's own OpenAPI schema: no 5xx and no response that breaks the
schema (status codes, content types, headers, bodies), for every operation; and the
schemathesis command itself, every check and phase (stateful too), against a served app."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.config import ApiOptions
from api.factory import create_app
from recsys.db import Database
from recsys.settings import Settings
from recsys.testing import free_port, stop_process, wait_ready
from tests.api import schema_rules
from tests.serving.catalog import TinyCatalog, build_catalog

EXAMPLES_PER_OPERATION = 30
CLI_EXAMPLES_PER_OPERATION = 10
ROOT = Path(__file__).resolve().parents[2]


def test_every_operation_conforms_to_the_schema(
    catalog: TinyCatalog, settings: Settings, database: Database
) -> None:
    app = create_app(settings, options=ApiOptions(), database=database)
    app.state.holder.reload()  # schemathesis drives the ASGI app without its lifespan
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    labels = {op.label for op in operations}
    assert {"GET /similar/{video_id}", "POST /similar", "POST /similar/upload"} <= labels
    for operation in operations:
        # Generated ids are random strings; also try ids that exist, to reach the 200 paths.
        strategy = operation.as_strategy()
        if "video_id" in str(operation.path):
            known = st.sampled_from(["v000", "v005", "failed1", "fresh1", "deleted1"])
            strategy = st.one_of(
                strategy,
                st.builds(lambda case, vid: _with_id(case, vid), operation.as_strategy(), known),
            )

        @given(case=strategy)
        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case) -> None:  # type: ignore[no-untyped-def]
            if case.operation.label == "POST /similar/upload":
                # Acceptable only with bytes that decode as a video (schema_rules.CONFIG_FILE).
                response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
                assert response.status_code < 500
            else:
                case.call_and_validate()

        run()


def _with_id(case, video_id: str):  # type: ignore[no-untyped-def]
    case.path_parameters = {**(case.path_parameters or {}), "video_id": video_id}
    return case


@pytest.fixture
def served_home(sqlite_settings: Settings, sqlite_database: Database) -> Iterator[str]:
    """A tiny catalog under a real ``recsys serve`` (the HTTP server's own refusals, a request
    line too long, are part of what the schema documents); its base URL."""
    build_catalog(sqlite_settings, sqlite_database)
    port = free_port()
    command = [str(Path(sys.executable).with_name("recsys")), "serve"]
    command += ["--home", str(sqlite_settings.resolved_home), "--port", str(port)]
    command += ["--workers", "1", "--log-level", "warning"]
    process = subprocess.Popen(command, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base + "/readyz", process, timeout=120)
        yield base
    finally:
        stop_process(process)


@pytest.mark.slow
def test_schemathesis_run_passes_every_check(served_home: str, tmp_path: Path) -> None:
    """``schemathesis run --checks all`` (coverage, fuzzing and stateful phases) finds nothing:
    every status, content type, header and body the app answers is the one its schema states,
    valid data is accepted and invalid data refused."""
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(schema_rules.CONFIG_FILE),
        "run",
        f"{served_home}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "coverage,fuzzing,stateful",
        "--max-examples",
        str(CLI_EXAMPLES_PER_OPERATION),
        "--seed",
        "1",
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--no-color",
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": schema_rules.__name__,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400, check=False
    )
    summary = result.stdout[-6000:]
    assert result.returncode == 0, summary
    assert " passed" in summary and "failures" not in summary.split("SUMMARY")[-1], summary
