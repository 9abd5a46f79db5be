"""Request and response bodies of the HTTP API (pydantic), as the OpenAPI schema shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, Field, model_validator

# External video ids: what ingest stores (<= 255 chars); no control characters or slashes, so
# every id fits in one path segment and in every database.
VIDEO_ID_PATTERN = r"^[^\x00-\x1f\x7f/]+$"
VideoId = Annotated[str, Field(min_length=1, max_length=255, pattern=VIDEO_ID_PATTERN)]
MAX_K = 1000
MAX_EXAMPLES = 100


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
    errors: list[FieldError] | None = Field(
        default=None, description="For invalid requests: each offending field."
    )


class SimilarItem(BaseModel):
    video_id: str
    score: float = Field(description="Cosine similarity to the query; higher is closer.")
    title: str | None
    category: str | None
    duration: float | None = Field(description="Seconds.")
    thumbnail_url: str | None
    modalities: dict[str, float | None] | None = Field(
        default=None,
        description="With explain=true: cosine similarity per modality (visual, audio); "
        "null where a modality vector is missing or empty.",
    )


class SimilarResponse(BaseModel):
    query: list[str] = Field(
        description="The query video id(s); empty for an uploaded video.",
    )
    model_version: str
    index_version: str
    k: int
    results: list[SimilarItem]
    searched: int = Field(description="How many neighbours were scanned to fill the filters.")
    exhausted: bool = Field(description="True when the catalog ran out before k results.")


VideoIdPath = Annotated[
    str, Path(min_length=1, max_length=255, pattern=VIDEO_ID_PATTERN, description="External id.")
]


class FilteredQuery(BaseModel):
    """What every ``/similar`` query shares: how many, what to leave out, and explanations."""

    k: int = Field(default=10, ge=1, le=MAX_K, description="How many neighbours.")
    category: str | None = Field(
        default=None, min_length=1, max_length=255, description="Only this category."
    )
    exclude: list[VideoId] = Field(
        default_factory=list,
        max_length=MAX_K,
        description="Video ids never returned (repeat the parameter).",
    )
    min_duration: float | None = Field(default=None, ge=0.0, le=1e9, description="Seconds.")
    max_duration: float | None = Field(
        default=None, ge=0.0, le=1e9, description="Seconds; not below min_duration."
    )
    explain: bool = Field(
        default=False, description="Add per-modality (visual, audio) similarities."
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

    model_config = {"extra": "forbid"}


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


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
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
