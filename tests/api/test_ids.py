"""Every id ingest assigns is routable: ``sub/clip``, spaces, ``%``, ``?``, ``#``, unicode, through
``/similar``, ``/videos``, the page, media and thumbnails, URL-encoded by the client (``/`` as a
literal or ``%2F``); ids a URL can never carry are refused by one rule, ``unroutable_reason``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import Field, TypeAdapter, ValidationError

from api.config import ApiOptions
from api.factory import create_app
from recsys.db import Database
from recsys.db.models import Video
from recsys.ids import (
    MAX_VIDEO_ID_LENGTH,
    ROUTABLE_VIDEO_ID_PATTERN,
    VideoKey,
    unroutable_reason,
    video_id_path,
)
from recsys.ingest import ingest_paths
from recsys.settings import Settings
from recsys.store import EmbeddingStore
from recsys.synth.writer import write_test_video
from tests.serving.catalog import TinyCatalog, publish, write_thumbnail

ODD_IDS = ["sub/clip", "a b", "ünï", "x%y", "q?#", "deep/er/clip.v2", "..x/.y", "日本/動画 1"]


def encodings(video_id: str) -> list[str]:
    """How clients write the id in a path: every reserved character percent-encoded, with "/"
    kept literal or encoded too."""
    return sorted({quote(video_id, safe="/"), quote(video_id, safe="")})


# ------------------------------------------------------------------ the rule
@pytest.mark.parametrize("video_id", [*ODD_IDS, "v000", "...", ".x", "x.jpg", " ", "a\\b"])
def test_routable_ids(video_id: str) -> None:
    assert unroutable_reason(video_id) is None


@pytest.mark.parametrize(
    ("video_id", "words"),
    [
        ("", "empty"),
        ("x" * (MAX_VIDEO_ID_LENGTH + 1), "at most 255"),
        ("a\nb", "control character U+000A"),
        ("a\x00", "control character U+0000"),
        ("a\x7f", "U+007F"),
        ("a\x85", "U+0085"),
        ("\ud800x", "lone surrogate"),
        ("/abs", "empty path segment"),
        ("dir/", "empty path segment"),
        ("a//b", "empty path segment"),
        (".", "'.' path segment"),
        ("..", "'..' path segment"),
        ("a/./b", "'.' path segment"),
        ("a/../b", "'..' path segment"),
    ],
)
def test_unroutable_ids_have_a_reason(video_id: str, words: str) -> None:
    reason = unroutable_reason(video_id)
    assert reason is not None and words in reason


SchemaId = TypeAdapter(
    Annotated[
        str, Field(min_length=1, max_length=MAX_VIDEO_ID_LENGTH, pattern=ROUTABLE_VIDEO_ID_PATTERN)
    ]
)


@given(st.text(alphabet=st.sampled_from("a./ \x00\n\x7f\x9f%?#ü"), max_size=8))
@hypothesis_settings(max_examples=300, derandomize=True, database=None, deadline=None)
def test_the_schema_pattern_states_the_rule(video_id: str) -> None:
    """The OpenAPI pattern (checked here by pydantic's own regex engine, as clients and
    schemathesis read it) accepts exactly the ids the rule accepts."""
    try:
        SchemaId.validate_python(video_id)
        by_schema = True
    except ValidationError:
        by_schema = False
    assert by_schema == (unroutable_reason(video_id) is None), repr(video_id)


def test_video_id_path_quotes_all_but_slashes() -> None:
    assert video_id_path("sub/a b?#%ü") == "sub/a%20b%3F%23%25%C3%BC"
    assert video_id_path("v000") == "v000"


@pytest.mark.parametrize("char", [chr(c) for c in range(1, 128)] + ["ü", "٣", "ǅ", "ß"])
def test_video_id_path_is_quote_for_every_character(char: str) -> None:
    """The path of ids with nothing to encode skips ``quote``: it must agree with it anyway."""
    for video_id in (char, f"a{char}b", f"sub/{char}/clip-1.v_2~"):
        assert video_id_path(video_id) == quote(video_id, safe="/")


# ------------------------------------------------------------------ ids from directory ingest
@pytest.fixture
def ingested(settings: Settings, database: Database, tmp_path: Path) -> dict[str, Path]:
    """A library folder with files in sub-folders and odd names, ingested for real."""
    library = tmp_path / "Videos"
    names = ["top.mp4", "sub/clip.mp4", "sub/a b.mp4", "ünï/x%y.mp4", "q?#.mp4"]
    files = {}
    for seed, name in enumerate(names):  # different content: copies would be aliases
        files[name.rsplit(".", 1)[0]] = write_test_video(library / name, seconds=0.5, seed=seed)
    report = ingest_paths(settings, database, [library])
    assert report.ok, report.failures
    return files


def test_every_id_directory_ingest_assigns_is_served(
    settings: Settings, database: Database, ingested: dict[str, Path]
) -> None:
    app = create_app(settings, options=ApiOptions(), database=database)
    with TestClient(app, raise_server_exceptions=False) as client:
        home = client.get("/").text
        for video_id, path in ingested.items():
            assert unroutable_reason(video_id) is None
            for encoded in encodings(video_id):
                detail = client.get(f"/videos/{encoded}")
                assert detail.status_code == 200, (video_id, encoded, detail.text)
                body = detail.json()
                assert body["video_id"] == video_id
                media = client.get(body["media_url"])
                assert media.status_code == 200, (video_id, body["media_url"], media.text)
                assert media.content == path.read_bytes()
                thumbnail = client.get(body["thumbnail_url"])
                assert thumbnail.status_code == 200, (video_id, thumbnail.text)
                assert thumbnail.content[:2] == b"\xff\xd8"
                page = client.get(f"/ui/videos/{encoded}")
                assert page.status_code == 200, (video_id, page.text)
                assert f"<code>{video_id}</code>" in unescape(page.text)
                # Nothing is indexed yet: the recommendations say so, the lookup did not fail.
                assert client.get(f"/similar/{encoded}").status_code == 503
            # The catalog page links to the video's page, and that link works.
            href = re.search(
                rf'href="([^"]+)" data-video-id="{re.escape(video_id)}"', unescape(home)
            )
            assert href is not None, video_id
            assert client.get(href.group(1)).status_code == 200


# ------------------------------------------------------------------ ids served by the index
def add_videos(
    settings: Settings, database: Database, catalog: TinyCatalog, video_ids: list[str]
) -> None:
    """Catalog rows with these ids, embedded beside the tiny catalog, and a new index."""
    rng = np.random.default_rng(5)
    base = catalog.vectors["v000"]
    vectors = base + 0.2 * rng.normal(size=(len(video_ids), base.shape[0]))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    visual = rng.normal(size=(len(video_ids), 8)).astype(np.float32)
    audio = rng.normal(size=(len(video_ids), 6)).astype(np.float32)
    with database.session() as session:
        rows = [
            Video(
                video_id=video_id,
                uri=str(catalog.media_file),
                content_hash=f"hash-odd-{i}",
                duration_s=7.0,
                title=f"Odd {i}",
                category="music",
                tags=["music"],
                thumbnail_path=write_thumbnail(settings, f"odd-{i}", (200, 10 * i, 90)),
            )
            for i, video_id in enumerate(video_ids)
        ]
        session.add_all(rows)
        session.flush()
        keys = [VideoKey(row.id) for row in rows]
        EmbeddingStore(settings).write_batch(
            session,
            catalog.model_version,
            keys,
            [row.content_hash for row in rows],
            "content-1",
            vectors,
            modalities={"visual": visual, "audio": audio},
        )
    for i, video_id in enumerate(video_ids):
        catalog.video_keys[video_id] = keys[i]
        catalog.vectors[video_id] = vectors[i]
        catalog.categories[video_id] = "music"
        catalog.durations[video_id] = 7.0
        catalog.served.append(video_id)
    catalog.index_version = publish(settings, database, catalog)


@pytest.fixture
def odd_client(
    catalog: TinyCatalog, settings: Settings, database: Database
) -> Iterator[TestClient]:
    add_videos(settings, database, catalog, ODD_IDS)
    settings.media_roots = [catalog.media_file.parent]  # where the tiny catalog's file lies
    app = create_app(settings, options=ApiOptions(), database=database)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_odd_ids_through_similar_videos_page_media_and_thumbnails(
    odd_client: TestClient, catalog: TinyCatalog
) -> None:
    client = odd_client
    for video_id in ODD_IDS:
        expected = catalog.expected(catalog.vectors[video_id], 5, skip={video_id})
        for encoded in encodings(video_id):
            similar = client.get(f"/similar/{encoded}", params={"k": 5})
            assert similar.status_code == 200, (video_id, encoded, similar.text)
            body = similar.json()
            assert body["query"] == [video_id]
            assert [r["video_id"] for r in body["results"]] == expected
            assert client.get(f"/videos/{encoded}").json()["served"] is True
            assert client.get(f"/thumbnails/{encoded}.jpg").status_code == 200
            assert client.get(f"/media/{encoded}").status_code == 200
            assert client.get(f"/ui/videos/{encoded}").status_code == 200
        # Every URL the API hands out for a result works.
        for result in body["results"]:
            if result["thumbnail_url"]:
                assert client.get(result["thumbnail_url"]).status_code == 200, result
    # Ids in query strings and bodies: excluded, positive and negative examples.
    excluded = client.get("/similar/v000", params={"k": 20, "exclude": ODD_IDS}).json()
    assert not set(ODD_IDS) & {r["video_id"] for r in excluded["results"]}
    examples = client.post(
        "/similar", json={"positive": ["sub/clip", "q?#"], "negative": ["x%y"], "k": 5}
    )
    assert examples.status_code == 200, examples.text
    assert examples.json()["query"] == ["sub/clip", "q?#"]


def test_the_page_links_of_odd_ids_are_followable(
    odd_client: TestClient, catalog: TinyCatalog
) -> None:
    page = odd_client.get(f"/ui/videos/{quote('sub/clip', safe='')}")
    assert page.status_code == 200
    html = unescape(page.text)
    source = re.search(r'<source src="([^"]+)">', html)
    assert source is not None and odd_client.get(source.group(1)).status_code == 200
    links = re.findall(r'href="(/ui/videos/[^"]+)" data-video-id="([^"]+)"', html)
    odd_links = [(href, video_id) for href, video_id in links if video_id in ODD_IDS]
    assert odd_links, "the odd ids sit next to each other; some must be recommended"
    for href, video_id in odd_links:
        followed = odd_client.get(href)
        assert followed.status_code == 200, (href, followed.text)
        assert f"<code>{video_id}</code>" in unescape(followed.text)


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/videos/a%2F%2Fb", "empty path segment"),
        ("/videos/a%2F.%2Fb", "'.' path segment"),
        ("/similar/x%0Ay", "control character"),
        ("/similar/" + "x" * 256, "at most 255"),
        ("/media/a%2F..%2Fb", "'..' path segment"),
        ("/thumbnails/a%2F%2Fb.jpg", "empty path segment"),
    ],
)
def test_unroutable_ids_are_422_with_the_reason(client: TestClient, path: str, words: str) -> None:
    response = client.get(path)
    assert response.status_code == 422, response.text
    assert words in response.json()["detail"]


def test_unroutable_ids_in_bodies_and_pages(client: TestClient) -> None:
    bad = client.post("/similar", json={"positive": ["v001", "a//b"]})
    assert bad.status_code == 422 and "empty path segment" in bad.json()["detail"]
    excluded = client.get("/similar/v001", params={"exclude": "dir/"})
    assert excluded.status_code == 422
    page = client.get("/ui/videos/a%2F%2Fb")
    assert page.status_code == 422 and "empty path segment" in page.text
