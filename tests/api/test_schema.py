"""schemathesis against the app's own OpenAPI schema: no 5xx and no response that breaks the
schema (status codes, content types, headers, bodies), for every operation."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.config import ApiOptions
from api.factory import create_app
from recsys.db import Database
from recsys.settings import Settings
from tests.serving.catalog import TinyCatalog

EXAMPLES_PER_OPERATION = 30


def test_every_operation_conforms_to_the_schema(
    catalog: TinyCatalog, settings: Settings, database: Database
) -> None:
    app = create_app(settings, options=ApiOptions(), database=database)
    app.state.holder.reload()  # schemathesis drives the ASGI app without its lifespan
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
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
            if case.operation.label == "POST /similar/upload" or _breaks_cross_field_rules(case):
                # Rules a schema cannot state (file contents, min <= max, positives not also
                # negatives) make some schema-valid requests a 4xx on purpose.
                response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
                assert response.status_code < 500
            else:
                case.call_and_validate()

        run()


def _breaks_cross_field_rules(case) -> bool:  # type: ignore[no-untyped-def]
    fields = dict(case.query or {})
    if isinstance(case.body, dict):
        fields.update(case.body)
        if set(case.body.get("positive") or []) & set(case.body.get("negative") or []):
            return True
    if fields.get("page_token") is not None:
        return True  # a token is valid only as a previous answer made it
    low, high = fields.get("min_duration"), fields.get("max_duration")
    return isinstance(low, int | float) and isinstance(high, int | float) and low > high


def _with_id(case, video_id: str):  # type: ignore[no-untyped-def]
    case.path_parameters = {**(case.path_parameters or {}), "video_id": video_id}
    return case
