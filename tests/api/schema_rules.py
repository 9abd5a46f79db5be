"""What schemathesis must know of this API beyond its OpenAPI schema, for the CLI and the tests.

A JSON schema states each field alone; the rules across fields that the 422 response documents
(``min_duration`` not above ``max_duration``, no id both positive and negative, a
``page_token`` only as the previous page of the same query returned it) cannot be written in
it. :func:`within_documented_rules` keeps the cases schemathesis means to be valid within them;
invalid ones are left as generated. Loaded by the CLI with
``SCHEMATHESIS_HOOKS=tests.api.schema_rules`` beside ``--config-file
tests/api/schemathesis.toml`` (the statuses and the upload, see there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from schemathesis.generation.case import Case
from schemathesis.hooks import HookContext

CONFIG_FILE = Path(__file__).with_name("schemathesis.toml")


def _within(fields: dict[str, Any]) -> dict[str, Any]:
    fields = dict(fields)
    fields.pop("page_token", None)  # only a previous answer makes a valid one
    low, high = _number(fields.get("min_duration")), _number(fields.get("max_duration"))
    if low is not None and high is not None and low > high:
        fields["min_duration"], fields["max_duration"] = (
            fields["max_duration"],
            fields["min_duration"],
        )
    positive, negative = fields.get("positive"), fields.get("negative")
    if isinstance(positive, list) and isinstance(negative, list):
        fields["negative"] = [item for item in negative if item not in positive]
    return fields


def _number(value: Any) -> float | None:
    """A generated number, as the fuzzer (a number) or the coverage phase (its text) gives it."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _is_positive(case: Case) -> bool:
    meta = case.meta
    return meta is None or meta.generation.mode.is_positive


@schemathesis.hook("map_case")
def within_documented_rules(context: HookContext, case: Case) -> Case:
    """A case meant to be valid, moved within the cross-field rules."""
    if not _is_positive(case):
        return case
    if isinstance(case.query, dict):
        case.query = _within(case.query)
    if isinstance(case.body, dict):
        case.body = _within(case.body)
    return case
