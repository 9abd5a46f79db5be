"""API-only knobs (``RECSYS_API_*``), kept apart from the engine-wide :class:`Settings`."""

from __future__ import annotations

from functools import cached_property

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from recsys.choices import GpuMode
from recsys.events.hybrid import DEFAULT_BLEND, BlendSettings
from serving.plan import DEFAULT_BUDGET, DEFAULT_POOL, DUPLICATE_SIMILARITY


class ApiOptions(BaseSettings):
    """Serving options; every field can be set as ``RECSYS_API_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_API_", extra="ignore")

    metadata_refresh_s: float = Field(
        default=30.0,
        description="How often the in-memory catalog picks up changed rows (status, titles); "
        "each refresh scans videos.updated_at.",
    )
    search_threads: int = Field(
        default=1,
        description="FAISS threads per worker; 1 suits many small concurrent queries.",
    )
    upload_concurrency: int = Field(
        default=1, ge=1, description="Uploads decoded and embedded at the same time per worker."
    )
    upload_queue: int = Field(
        default=4,
        ge=0,
        description="Uploads that may wait for a decode slot per worker (holding no thread); "
        "one more is answered 503 with Retry-After at once.",
    )
    upload_receive_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="An upload whose body has not fully arrived this many seconds after the "
        "request started is answered 408 (a slow client holds a queue place meanwhile).",
    )
    fast_lane: bool = Field(
        default=True,
        description="Answer plain GET /similar/{video_id} requests before the app's middleware "
        "stack (api.lane); off, every request takes the full stack (same answers, slower).",
    )
    coalesce_writes: bool = Field(
        default=True,
        description="recsys serve: send a response's head and body in one system call "
        "(api.transport); off, uvicorn's httptools protocol as it comes (two sends).",
    )
    inline_search_limit: int = Field(
        default=4096,
        description="Searches deeper than this run in a thread so the event loop stays free.",
    )
    max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest request body of every route but the upload "
        "(RECSYS_UPLOAD_MAX_BYTES); larger ones are answered 413 before they are parsed.",
    )
    search_max_depth: int = Field(
        default=DEFAULT_BUDGET.max_depth,
        ge=1,
        description="Most neighbours one filtered query may ask the index for while it searches "
        "deeper; a search stopped here answers partial=true.",
    )
    search_max_effort: int = Field(
        default=DEFAULT_BUDGET.max_effort,
        ge=1,
        description="How many times its tuned nprobe/efSearch a filtered query may widen an "
        "approximate index; a search stopped here answers partial=true.",
    )
    hybrid_prior: float = Field(
        default=DEFAULT_BLEND.prior,
        ge=0.0,
        description="Hybrid /similar: co-watch partners at which a video's co-watch share is "
        "half of hybrid_max_share (share = max_share * partners / (partners + prior)).",
    )
    hybrid_max_share: float = Field(
        default=DEFAULT_BLEND.max_share,
        ge=0.0,
        le=1.0,
        description="Hybrid /similar: the most weight co-watch gets against content similarity, "
        "however many partners a video has (0: content only; 1: co-watch alone at the limit).",
    )
    rerank_pool: int = Field(
        default=DEFAULT_POOL,
        ge=1,
        le=10_000,
        description="With diversity > 0: the best candidates (after filters, near-duplicates "
        "and channel caps) that maximal marginal relevance chooses from; the same for every "
        "page, so the list and its pages end there.",
    )
    duplicate_similarity: float = Field(
        default=DUPLICATE_SIMILARITY,
        gt=0.0,
        le=1.0,
        description="Cosine similarity of two results' embeddings from which the later one is "
        "a near-duplicate and left out (dedup=true); lower it for embeddings that keep "
        "siblings apart (bench/quality.py near_duplicates measures precision and recall).",
    )
    max_deep_searches: int = Field(
        default=8,
        ge=1,
        description="Searches run in threads (filtered, deep, by examples) at the same time per "
        "worker; one more is answered 503 with Retry-After at once instead of queueing.",
    )
    gpu: GpuMode = Field(
        default=GpuMode.AUTO,
        description="Search the index on the GPU: auto (when faiss sees one), on or off.",
    )

    @cached_property
    def blend(self) -> BlendSettings:
        """The hybrid blend these options ask for (recsys.events.hybrid), built once."""
        return BlendSettings(prior=self.hybrid_prior, max_share=self.hybrid_max_share)
