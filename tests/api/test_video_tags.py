"""Predicted tags over HTTP: ``/videos/{id}/tags`` beside the human labels, ``/videos/{id}``
shows them, and ``/similar?predicted_category=`` admits a video by its human category or a
prediction at least ``min_confidence`` confident."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from recsys.choices import TagKind
from recsys.db import Database
from recsys.db.models import Video
from recsys.tags import TagPrediction, VideoTags
from recsys.tags.spans import Span
from recsys.tags.store import write_predictions
from tests.serving.catalog import TinyCatalog
from tests.tags.rows import add_labelled_videos


def _predict(database: Database, video_id: str, found: VideoTags) -> None:
    with database.session() as session:
        video = session.scalars(select(Video).where(Video.video_id == video_id)).one()
        write_predictions(session, video, "tags-test", found)


def _music(confidence: float) -> VideoTags:
    return VideoTags(
        [TagPrediction(TagKind.CATEGORY, "music", confidence, [Span(0.0, 2.5)])], False, False, []
    )


def test_tags_route_and_video_detail_show_predictions_beside_human_labels(
    client: TestClient, catalog: TinyCatalog, database: Database
) -> None:
    given = catalog.categories["v001"]
    _predict(
        database,
        "v001",
        VideoTags(
            [
                TagPrediction(TagKind.CATEGORY, "news", 0.61, [Span(2.0, 5.0)]),
                TagPrediction(TagKind.CATEGORY, given, 0.3, [Span(0.0, 2.0)]),
                TagPrediction(TagKind.TAG, "crowd", 0.8, [Span(0.0, 5.0)]),
            ],
            False,
            True,
            ["news", given],
        ),
    )

    body = client.get("/videos/v001/tags").json()

    assert body["given"][0] == {"tag": given, "kind": "category"}
    assert [p["tag"] for p in body["predicted"]] == ["crowd", "news"]  # best first, no repeat
    assert body["predicted"][1]["spans"] == [{"start_s": 2.0, "end_s": 5.0}]
    assert body["segments_disagree"] and body["tags_model"] == "tags-test"
    detail = client.get("/videos/v001").json()
    assert detail["category"] == given  # the human label is untouched
    assert [p["tag"] for p in detail["predicted_tags"]] == ["crowd", "news"]
    assert client.get("/videos/nope/tags").status_code == 404
    assert client.get("/videos/v002/tags").json()["predicted"] == []


def test_similar_filters_by_predicted_category_above_a_confidence(
    client: TestClient, catalog: TinyCatalog, database: Database
) -> None:
    unlabelled = [v for v in catalog.served if catalog.categories[v] != "music"][:3]
    with database.session() as session:
        session.execute(
            update(Video).where(Video.video_id.in_(unlabelled[:2])).values(category=None)
        )
    _predict(database, unlabelled[0], _music(0.9))
    _predict(database, unlabelled[1], _music(0.3))
    _predict(database, unlabelled[2], _music(0.95))  # keeps its human category: not music

    def found(**params: str | float) -> set[str]:
        response = client.get("/similar/v000", params={"k": 60, **params})
        assert response.status_code == 200, response.text
        return {r["video_id"] for r in response.json()["results"]}

    music = {v for v in catalog.served if catalog.categories[v] == "music"} - {"v000"}
    assert found(predicted_category="music") == music | {unlabelled[0]}
    assert found(predicted_category="music", min_confidence=0.2) == music | set(unlabelled[:2])
    assert found(predicted_category="nothing") == set()


def test_an_id_ending_in_tags_is_reachable_beside_the_tags_route(
    client: TestClient, catalog: TinyCatalog, database: Database
) -> None:
    """Directory ingest names ``sub/tags.mp4`` ``sub/tags``: an encoded last ``/`` reaches the
    video, a literal ``/tags`` at the end asks for tags, and every id has both."""
    add_labelled_videos(
        database, {"sub": ("news", []), "sub/tags": ("music", []), "lone/tags": ("sport", [])}
    )

    for path in ("/videos/sub%2Ftags", "/videos/sub%2ftags", "/videos/sub%2F%74ags"):
        detail = client.get(path)
        assert detail.status_code == 200, (path, detail.text)
        assert (detail.json()["video_id"], detail.json()["category"]) == ("sub/tags", "music")
    assert client.get("/videos/sub").json()["category"] == "news"
    # A literal /tags at the end: the tags of the id before it.
    assert client.get("/videos/sub/tags").json()["given"] == [{"tag": "news", "kind": "category"}]
    for path in ("/videos/sub/tags/tags", "/videos/sub%2Ftags/tags"):
        tags = client.get(path)
        assert tags.status_code == 200, (path, tags.text)
        assert tags.json()["given"] == [{"tag": "music", "kind": "category"}]

    assert client.get("/videos/lone%2Ftags").json()["category"] == "sport"
    missing = client.get("/videos/lone/tags")
    assert missing.status_code == 404
    assert "videos/lone%2Ftags" in missing.json()["detail"], missing.json()
