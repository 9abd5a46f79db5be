"""/docs and /redoc work without network: every asset they load is served by the app."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

# What a page loads: src= and href= attributes, url: in the inline script, and any absolute URL.
REFERENCE = re.compile(r"""(?:src|href)=["']([^"']+)["']|url:\s*["']([^"']+)["']""")
ABSOLUTE = re.compile(r"(?:https?:)?//[A-Za-z0-9.-]+")


@pytest.mark.parametrize(("page", "marker"), [("/docs", "SwaggerUIBundle"), ("/redoc", "<redoc")])
def test_docs_pages_load_only_local_assets(client: TestClient, page: str, marker: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    html = response.text
    assert marker in html
    assert not ABSOLUTE.findall(html), f"{page} references another host: {ABSOLUTE.findall(html)}"
    references = [a or b for a, b in REFERENCE.findall(html)]
    assets = [ref for ref in references if ref.endswith((".js", ".css", ".png"))]
    assert assets, f"{page} names no asset"
    for ref in references:
        assert ref.startswith("/"), ref
        answer = client.get(ref)
        assert answer.status_code == 200, (ref, answer.status_code)
        assert answer.content, ref


def test_docs_assets_are_not_in_the_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith(("/static", "/docs", "/redoc"))]
