"""Page tokens: where the next page of one ranked list starts, for one index version.

A token carries the index version that ranked the list, the offset of the next page and a
digest of what decides the list (:meth:`serving.plan.QueryPlan.list_digest`). Lists are
deterministic for one index version (ties broken by video key), so pages 1..n concatenated
equal one request for all of them; a token from another version is refused
(:class:`~serving.errors.StalePageToken`) rather than silently skipping or repeating results.
"""

from __future__ import annotations

import base64
import binascii

from serving.errors import InvalidQuery, StalePageToken


def page_token(index_version: str, offset: int, digest: str) -> str:
    text = f"{index_version}\n{offset}\n{digest}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def token_offset(token: str, index_version: str, digest: str) -> int:
    """The offset a token points at, if it was made for this list by this index version."""
    try:
        padded = token + "=" * (-len(token) % 4)
        version, offset_text, made_for = (
            base64.urlsafe_b64decode(padded.encode()).decode().split("\n")
        )
        offset = int(offset_text)
    except (ValueError, binascii.Error, UnicodeError):
        raise InvalidQuery(f"page_token {token[:40]!r} is not a page token of this API") from None
    if offset < 0:
        raise InvalidQuery(f"page_token {token[:40]!r} is not a page token of this API")
    if version != index_version:
        raise StalePageToken(
            f"page_token was made by index {version}, this server ranks with index "
            f"{index_version}; ask for the first page again"
        )
    if made_for != digest:
        raise InvalidQuery(
            "page_token belongs to another query (other video, filters, source or re-ranking); "
            "send the same parameters as the page it came from"
        )
    return offset


__all__ = ["page_token", "token_offset"]
