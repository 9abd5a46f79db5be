"""Request and response bodies of the HTTP API (pydantic), as the OpenAPI schema shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Path
from pydantic import AfterValidator, BaseModel, Field, model_validator
from starlette.convertors import Convertor, register_url_convertor

from recsys.choices import SimilarSource
from recsys.ids import MAX_VIDEO_ID_LENGTH, ROUTABLE_VIDEO_ID_PATTERN, unroutable_reason
from serving.plan import DEFAULT_K, MAX_K


class VideoIdConvertor(Convertor[str]):
    """``{video_id:video}`` in a route: the rest of the path, whatever it holds (``/`` and
    control characters too), so that :data:`VideoIdPath` validation, not the router, says what
    is wrong with an id (422 with the reason instead of a bare 404)."""

    regex = r"(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("video", VideoIdConvertor())

VIDEO_ID_SCHEMA = {
    "minLength": 1,
    "maxLength": MAX_VIDEO_ID_LENGTH,
    "pattern": ROUTABLE_VIDEO_ID_PATTERN,
}
"""What the OpenAPI schema says of every video id; :func:`recsys.ids.unroutable_reason` is the
rule it states (the validators below call it, so the messages say what is wrong)."""


def routable_video_id(video_id: str) -> str:
    """A video id the API can serve, else a validation error with the reason (422)."""
    reason = unroutable_reason(video_id)
    if reason is not None:
        raise ValueError(f"video id {reason}")
    return video_id


# External video ids: what ingest assigns (any text but control characters, "/"-segments that
# URLs would collapse, at most 255 characters); in paths they are the URL-encoded tail.
VideoId = Annotated[
    str, AfterValidator(routable_video_id), Field(json_schema_extra=VIDEO_ID_SCHEMA)
]
MAX_EXAMPLES = 100
MAX_OFFSET = 10_000
PAGE_TOKEN_PATTERN = r"^[A-Za-z0-9_-]+$"
"""What :func:`serving.pages.page_token` writes (unpadded URL-safe base64)."""
Name = Annotated[str, Field(min_length=1, max_length=255)]


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where: path, query, body and the field name.")
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error the API raises itself (4xx/5xx other than request validation)."""

    error: str = Field(description="Machine-readable code, e.g. video_not_found.")
    detail: str = Field(description="What went wrong and what to do about it.")
    video_id: str | None = None
    status: str | None = Field(default=None, description="Catalog status of the video.")
    reason: str | None = Field(default=None, description="Why the video is not served.")
    request_id: str | None = Field(
        default=None,
        description="Quote it to the operator: the server log has the details under this id "
        "(also the X-Request-ID header).",
    )
    errors: list[FieldError] | None = Field(
        default=None, description="For invalid requests: each offending field."
    )


class SimilarItem(BaseModel):
    video_id: str
    score: float = Field(
        description="Higher is closer: cosine similarity (content), co-watch weight "
        "(collaborative) or the blended score (hybrid)."
    )
    title: str | None
    category: str | None
    channel: str | None = Field(default=None, description="The uploader, when known.")
    duration: float | None = Field(description="Seconds.")
    thumbnail_url: str | None
    modalities: dict[str, float | None] | None = Field(
        default=None,
        description="With explain=true: cosine similarity per modality (visual, audio); "
        "null where a modality vector is missing or empty.",
    )
    source: str | None = Field(
        default=None,
        description="With explain=true on GET /similar/{video_id}: where this result came from "
        "(content, collaborative, or both).",
    )
    moment: MomentMatch | None = Field(
        default=None,
        description="With explain=moments on GET /similar/{video_id}: the best-matching spans.",
    )


class MomentMatch(BaseModel):
    """With explain=moments: the spans of the query and of this result that match best."""

    query_start_s: float | None = None
    query_end_s: float | None = None
    start_s: float | None = Field(default=None, description="Seconds into this result.")
    end_s: float | None = None
    similarity: float | None = Field(
        default=None, description="Cosine of the two segments' standardised features."
    )
    missing: str | None = Field(
        default=None, description="Why there is no moment (e.g. no cached segment features)."
    )


class SimilarResponse(BaseModel):
    query: list[str] = Field(
        description="The query video id(s); empty for an uploaded video.",
    )
    model_version: str
    index_version: str
    k: int
    offset: int = Field(default=0, description="Position of the first result in the list.")
    results: list[SimilarItem]
    searched: int = Field(description="How many neighbours were scanned to fill the filters.")
    exhausted: bool = Field(
        description="True when the catalog (with diversity > 0: the pool) ran out before k results."
    )
    partial: bool = Field(
        default=False,
        description="True when the per-request search bound (RECSYS_API_SEARCH_MAX_DEPTH, "
        "RECSYS_API_SEARCH_MAX_EFFORT) stopped a filtered search before k results: the "
        "results are the best found within it, and more matching videos may exist.",
    )
    source: SimilarSource | None = Field(
        default=None,
        description="GET /similar/{video_id}: the neighbours' source (content, "
        "collaborative or hybrid); null for the other queries (content).",
    )
    duplicates_removed: int = Field(
        default=0,
        description="Near-duplicates of the query or of a better-ranked result left out "
        "(same content hash, or embeddings closer than the calibrated threshold); dedup=false "
        "keeps them.",
    )
    channel_capped: int = Field(
        default=0, description="Results left out because their channel reached max_per_channel."
    )
    pool: int | None = Field(
        default=None,
        description="With diversity > 0: how many of the best candidates MMR chose from "
        "(RECSYS_API_RERANK_POOL); the list, and so its pages, ends there.",
    )
    next_page_token: str | None = Field(
        default=None,
        description="Pass as page_token (with the same parameters) for the next page; null on "
        "the last page. Valid for this index_version only (another answers 409).",
    )
    unknown_category: bool = Field(
        default=False, description="True when no catalog video has the category asked for."
    )
    unknown_channel: bool = Field(
        default=False, description="True when no catalog video has the channel asked for."
    )


VideoIdPath = Annotated[
    str,
    AfterValidator(routable_video_id),
    Path(
        description="External id, URL-encoded; '/' may stay literal (`sub/clip`) or be `%2F`.",
        json_schema_extra=VIDEO_ID_SCHEMA,
    ),
]


class FilteredQuery(BaseModel):
    """What every ``/similar`` query shares: how many, what to leave out, how to re-rank, which
    page, and explanations. Unknown parameters are refused (422 naming them)."""

    model_config = {"extra": "forbid"}

    k: int = Field(default=DEFAULT_K, ge=1, le=MAX_K, description="How many neighbours.")
    category: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Only this category (unknown_category in the answer when no video has it).",
    )
    channel: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Only this channel (unknown_channel in the answer when no video has it).",
    )
    exclude_channel: list[Name] = Field(
        default_factory=list,
        max_length=MAX_EXAMPLES,
        description="Channels never returned (repeat the parameter).",
    )
    predicted_category: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Only videos of this category: given by a human, or predicted by the tags "
        "model (`recsys tags`) with at least min_confidence.",
    )
    min_confidence: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Calibrated confidence a predicted_category needs (about its precision).",
    )
    exclude: list[VideoId] = Field(
        default_factory=list,
        max_length=MAX_K,
        description="Video ids never returned (repeat the parameter).",
    )
    min_score: float | None = Field(
        default=None, ge=-1.0, le=1e9, description="Leave out results scoring below this."
    )
    dedup: bool = Field(
        default=True,
        description="Leave out near-duplicates of the query and of better-ranked results "
        "(counted in duplicates_removed).",
    )
    diversity: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="0 (default): pure similarity order. Towards 1: each next result is chosen "
        "less for its similarity to the query and more for being unlike the results before it "
        "(maximal marginal relevance over the best `pool` candidates).",
    )
    max_per_channel: int | None = Field(
        default=None, ge=1, le=MAX_K, description="At most this many results per channel."
    )
    offset: int = Field(
        default=0,
        ge=0,
        le=MAX_OFFSET,
        description="Skip this many results of the final list (pages of one list agree).",
    )
    page_token: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        pattern=PAGE_TOKEN_PATTERN,
        description="next_page_token of the previous page, with the same other parameters "
        "(another query's token answers 422, another index version's 409); takes the place of "
        "offset.",
    )
    min_duration: float | None = Field(default=None, ge=0.0, le=1e9, description="Seconds.")
    max_duration: float | None = Field(
        default=None, ge=0.0, le=1e9, description="Seconds; not below min_duration."
    )
    explain: bool | Literal["moments"] = Field(
        default=False,
        description="true: add per-modality (visual, audio) similarities; moments: also the "
        "spans of query and result that match best (GET /similar/{video_id}).",
    )

    @model_validator(mode="after")
    def _check_durations(self) -> FilteredQuery:
        if (
            self.min_duration is not None
            and self.max_duration is not None
            and self.min_duration > self.max_duration
        ):
            raise ValueError(
                f"min_duration ({self.min_duration:g}) must not exceed max_duration "
                f"({self.max_duration:g})"
            )
        return self


class SimilarQuery(FilteredQuery):
    """Query parameters of ``GET /similar/{video_id}`` (one model: validated in one pass)."""

    source: SimilarSource | None = Field(
        default=None,
        description="content: nearest embeddings; collaborative: the co-watch partners "
        "published with the index; hybrid: both, blended by the co-watch evidence the video has "
        "(a cold video: content only). Default: hybrid when the served index has a co-watch "
        "graph, else content.",
    )


class UploadQuery(FilteredQuery):
    """Query parameters of ``POST /similar/upload``."""

    tags: bool = Field(
        default=False,
        description="true: also predict the upload's categories and tags with the active tags "
        "model (`recsys tags train`), with the spans where each applies (`tags` in the "
        "answer; `tags.unavailable` says why when there is no usable tags model).",
    )


class ExampleQuery(FilteredQuery):
    """Recommend by examples: mean(positive) - negative_weight * mean(negative), normalised."""

    positive: list[VideoId] = Field(min_length=1, max_length=MAX_EXAMPLES)
    negative: list[VideoId] = Field(default_factory=list, max_length=MAX_EXAMPLES)
    negative_weight: float = Field(default=0.5, ge=0.0, le=10.0)

    @model_validator(mode="after")
    def _check_examples(self) -> ExampleQuery:
        overlap = set(self.positive) & set(self.negative)
        if overlap:
            raise ValueError(f"ids both positive and negative: {sorted(overlap)[:5]}")
        return self


class TagSpanOut(BaseModel):
    start_s: float
    end_s: float


class GivenTag(BaseModel):
    tag: str
    kind: Literal["category", "tag"]


class PredictedTagOut(BaseModel):
    tag: str
    kind: Literal["category", "tag"]
    confidence: float = Field(
        description="Calibrated: about this share of predictions this confident are right."
    )
    spans: list[TagSpanOut] = Field(description="Where in the video the tag applies.")
    tags_model: str


class VideoTagsOut(BaseModel):
    """Human labels and predicted tags of a video (categories are tags too), best first."""

    given: list[GivenTag]
    predicted: list[PredictedTagOut]
    tags_model: str | None = Field(description="The tags model that predicted, if any.")
    abstained: bool = Field(description="No category reached the model's threshold.")
    segments_disagree: bool = Field(
        description="Several categories each hold a large part of the video (see spans)."
    )
    segment_labels: list[str]


class UploadTagsOut(BaseModel):
    """Predicted tags of an uploaded file: the shape of ``predicted`` in ``/videos/{id}/tags``."""

    predicted: list[PredictedTagOut] = Field(
        description="Categories and tags predicted from the upload's content, best first."
    )
    tags_model: str | None = Field(description="The tags model that predicted (null: none).")
    abstained: bool = Field(description="No category reached the model's threshold.")
    segments_disagree: bool = Field(
        description="Several categories each hold a large part of the upload (see spans)."
    )
    segment_labels: list[str]
    unavailable: str | None = Field(
        default=None,
        description="Why nothing was predicted: no tags model trained yet, or one this server "
        "cannot use (another extractor, another model's embeddings); null when it predicted.",
    )


class UploadResponse(SimilarResponse):
    tags: UploadTagsOut | None = Field(
        default=None, description="With tags=true: the upload's predicted tags; else null."
    )


class VideoDetail(BaseModel):
    video_id: str
    title: str | None
    category: str | None
    tags: list[str]
    duration: float | None
    fps: float | None
    width: int | None
    height: int | None
    has_audio: bool | None
    status: str
    status_reason: str | None
    thumbnail_url: str | None
    media_url: str
    served: bool = Field(description="Whether the served index holds this video.")
    model_version: str | None = Field(description="Model of the served index, if any.")
    index_version: str | None
    created_at: datetime | None
    updated_at: datetime | None
    predicted_tags: list[PredictedTagOut] = Field(
        default_factory=list,
        description="Tags and categories predicted from the content (`recsys tags`), beside "
        "the human ones above; best first.",
    )


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "unavailable"] = Field(
        description="ready; degraded (answered 200: an index is served, something else is "
        "wrong, see detail); unavailable (503: nothing can be served)."
    )
    database: Literal["ok", "unreachable"] = "ok"
    index_version: str | None
    model_version: str | None
    vectors: int | None
    catalog: int | None
    detail: str | None = None


class ReloadResult(BaseModel):
    changed: bool
    index_version: str | None
    model_version: str | None
    vectors: int | None
    detail: str | None = None
