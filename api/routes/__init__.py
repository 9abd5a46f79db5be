"""HTTP routes, one module per area; each exposes ``router``."""

from __future__ import annotations

from typing import Any

from api.schemas import ErrorBody


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the API's own error statuses (all share :class:`ErrorBody`, with the
    request id the server log files the details under; a 400 of the HTTP server itself, which
    never reaches the app, is plain text)."""
    descriptions = {
        400: "A body that cannot be parsed (not UTF-8 JSON, broken multipart); as plain text, a "
        "request line the HTTP server cannot read (over 64 KiB of URL).",
        401: "Missing or wrong bearer token.",
        404: "Unknown video.",
        409: "The video is in the catalog but not served by this index (status and reason).",
        408: "The request body did not arrive in time.",
        413: "Request body or upload larger than the limit.",
        415: "Not a video file.",
        422: "Invalid parameters: an unknown parameter, a value out of range, a video id no URL "
        "can carry, or a rule across fields: min_duration not above max_duration, no id both "
        "positive and negative, a page_token only as the previous page of the same query "
        "returned it; or unreadable media.",
        503: "No index loaded, database unreachable or overloaded; retry after Retry-After.",
    }
    responses: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorBody, "description": descriptions[code]} for code in codes
    }
    if 400 in responses:
        responses[400]["content"] = {"text/plain": {"schema": {"type": "string"}}}
    return responses
