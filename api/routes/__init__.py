"""HTTP routes, one module per area; each exposes ``router``."""

from __future__ import annotations

from typing import Any

from api.schemas import ErrorBody


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the API's own error statuses (all share :class:`ErrorBody`, with the
    request id the server log files the details under)."""
    descriptions = {
        401: "Missing or wrong bearer token.",
        404: "Unknown video.",
        409: "The video is in the catalog but not served by this index (status and reason).",
        408: "The request body did not arrive in time.",
        413: "Request body or upload larger than the limit.",
        415: "Not a video file.",
        422: "Invalid parameters (e.g. a video id no URL can carry) or unreadable media.",
        503: "No index loaded, database unreachable or overloaded; retry after Retry-After.",
    }
    return {code: {"model": ErrorBody, "description": descriptions[code]} for code in codes}
