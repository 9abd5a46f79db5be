"""``/similar``: neighbours of a catalog video, of examples, or of an uploaded file."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Path, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from api import recommend, upload
from api.deps import DatabaseDep, HolderDep, SimilarQueryDep, query_parameters
from api.errors import VideoNotFound
from api.routes import error_responses
from api.schemas import (
    MAX_K,
    VIDEO_ID_PATTERN,
    ExampleQuery,
    FilteredQuery,
    SimilarQuery,
    SimilarResponse,
    VideoId,
)
from api.search import check_durations

router = APIRouter(tags=["similar"])

VideoIdPath = Annotated[
    str, Path(min_length=1, max_length=255, pattern=VIDEO_ID_PATTERN, description="External id.")
]
KQuery = Annotated[int, Query(ge=1, le=MAX_K, description="How many neighbours.")]
CategoryQuery = Annotated[
    str | None, Query(min_length=1, max_length=255, description="Only this category.")
]
ExcludeQuery = Annotated[
    list[VideoId] | None,
    Query(max_length=MAX_K, description="Video ids never returned (repeat the parameter)."),
]
MinDuration = Annotated[float | None, Query(ge=0.0, le=1e9, description="Seconds.")]
MaxDuration = Annotated[float | None, Query(ge=0.0, le=1e9, description="Seconds.")]
ExplainQuery = Annotated[bool, Query(description="Add per-modality (visual, audio) similarities.")]


@router.get(
    "/similar/{video_id}",
    response_model=SimilarResponse,
    responses=error_responses(404, 409, 422, 503),
    summary="Videos most similar to a catalog video",
    openapi_extra={"parameters": query_parameters(SimilarQuery)},
)
async def similar_to_video(
    video_id: VideoIdPath,
    query: SimilarQueryDep,
    holder: HolderDep,
    database: DatabaseDep,
) -> Any:
    """Nearest videos in the served index, best first, never the video itself nor deleted or
    failed ones; filters search deeper until `k` results or the catalog runs out."""
    # Hot path: answered from memory (no SQL); a thread only when filters may search deep.
    check_durations(query.min_duration, query.max_duration)
    state = holder.require_state()
    filters = recommend.filters_for(state, query)
    try:
        if filters.narrowing or query.k + len(filters.exclude) > holder.options.inline_search_limit:
            return await run_in_threadpool(
                recommend.by_video, state, video_id, query.k, filters, with_explain=query.explain
            )
        return recommend.by_video(state, video_id, query.k, filters, with_explain=query.explain)
    except VideoNotFound:
        raise await run_in_threadpool(
            recommend.missing_video_error, database, state, video_id
        ) from None


@router.post(
    "/similar",
    response_model=SimilarResponse,
    responses=error_responses(404, 409, 422, 503),
    summary="Recommend by examples (positive and negative video ids)",
)
async def similar_to_examples(query: ExampleQuery, holder: HolderDep, database: DatabaseDep) -> Any:
    state = holder.require_state()
    filters = recommend.filters_for(state, query)
    try:
        return await run_in_threadpool(
            recommend.by_examples,
            state,
            query.positive,
            query.negative,
            query.negative_weight,
            query.k,
            filters,
            with_explain=query.explain,
        )
    except VideoNotFound as error:
        raise await run_in_threadpool(
            recommend.missing_video_error, database, state, error.video_id or ""
        ) from None


@router.post(
    "/similar/upload",
    response_model=SimilarResponse,
    responses=error_responses(413, 415, 422, 503),
    summary="Videos most similar to an uploaded video file (not in the catalog)",
)
async def similar_to_upload(
    request: Request,
    file: Annotated[UploadFile, File(description="A video file (mp4, webm, mkv, mov, ...).")],
    holder: HolderDep,
    k: KQuery = 10,
    category: CategoryQuery = None,
    exclude: ExcludeQuery = None,
    min_duration: MinDuration = None,
    max_duration: MaxDuration = None,
    explain: ExplainQuery = False,
) -> Any:
    check_durations(min_duration, max_duration)
    state = holder.require_state()
    suffix = upload.check_type(file.filename, file.content_type)
    path = await run_in_threadpool(
        upload.save_upload, file.file, suffix, holder.settings.upload_max_bytes
    )
    try:
        vector, modalities = await run_in_threadpool(
            upload.embed_upload, holder, state, path, request.app.state.upload_gate
        )
    finally:
        await run_in_threadpool(upload.discard, path)
    filters = recommend.filters_for(
        state,
        FilteredQuery(
            k=k,
            category=category,
            exclude=exclude or [],
            min_duration=min_duration,
            max_duration=max_duration,
        ),
    )
    return await run_in_threadpool(
        recommend.by_vector, state, vector, modalities, k, filters, with_explain=explain
    )
