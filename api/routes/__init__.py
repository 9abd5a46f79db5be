"""HTTP routes, one module per area; each exposes ``router``."""

from __future__ import annotations

from typing import Any

from api.schemas import ErrorBody


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the API's own error statuses (all share :class:`ErrorBody`)."""
    descriptions = {
        401: "Missing or wrong bearer token.",
        404: "Unknown video.",
        409: "The video is in the catalog but not served by this index (status and reason).",
        413: "Upload larger than the limit.",
        415: "Not a video file.",
        422: "Invalid parameters or unreadable media.",
        503: "No index loaded or database unreachable; retry later.",
    }
    return {code: {"model": ErrorBody, "description": descriptions[code]} for code in codes}
