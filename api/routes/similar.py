"""``/similar``: neighbours of a catalog video, of examples, or of an uploaded file."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Request, Response, UploadFile
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State

from api import recommend, upload
from api.deps import (
    DatabaseDep,
    HolderDep,
    database_of,
    parse_query,
    parse_query_string,
    query_parameters,
)
from api.direct import FirstGet, direct_route, json_bytes, json_response, path_video_id
from api.index_holder import IndexHolder
from api.recommend import SearchLimits
from api.routes import error_responses
from api.schemas import (
    ExampleQuery,
    SimilarQuery,
    SimilarResponse,
    UploadQuery,
    UploadResponse,
    VideoIdPath,
)
from recsys.ids import unroutable_reason
from serving import pipeline
from serving.plan import ByExamples, ByVector, ByVideo, QueryPlan
from serving.state import ServingState

router = APIRouter(tags=["similar"])

FIRST_RESULT = "$response.body#/results/0/video_id"
RESULT_LINKS = {
    "DetailsOfFirstResult": {
        "operationRef": "#/paths/~1videos~1{video_id}/get",
        "parameters": {"video_id": FIRST_RESULT},
        "description": "Catalog details of the best result.",
    },
    "SimilarToFirstResult": {
        "operationRef": "#/paths/~1similar~1{video_id}/get",
        "parameters": {"video_id": FIRST_RESULT},
        "description": "The neighbours of the best result.",
    },
}
"""Where an answer's results lead (OpenAPI links: clients and schemathesis' stateful phase)."""
# The upload route comes first: "/similar/upload" also matches "/similar/{video_id}", and the
# first route a path matches decides the Allow header of a 405.


@router.post(
    "/similar/upload",
    response_model=UploadResponse,
    responses=error_responses(400, 413, 415, 422, 503),
    summary="Videos most similar to an uploaded video file (not in the catalog), and its tags",
    openapi_extra={"parameters": query_parameters(UploadQuery)},
)
async def similar_to_upload(
    request: Request,
    file: Annotated[UploadFile, File(description="A video file (mp4, webm, mkv, mov, ...).")],
    holder: HolderDep,
    database: DatabaseDep,
) -> Any:
    """With `tags=true` the answer's `tags` holds the upload's predicted categories and tags
    (the active tags model, spans in seconds), or says why there are none."""
    query = parse_query(UploadQuery, request)
    state = holder.require_state()
    suffix = upload.check_type(file.filename, file.content_type)
    path = await run_in_threadpool(
        upload.save_upload, file.file, suffix, holder.settings.upload_max_bytes
    )
    try:
        embedded = await run_in_threadpool(
            upload.embed_upload,
            holder,
            state,
            path,
            request.app.state.upload_gate,
            tags=query.tags,
        )
    finally:
        await run_in_threadpool(upload.discard, path)
    limits: SearchLimits = request.app.state.search_limits
    plan = recommend.plan_of(ByVector(embedded.vector, embedded.modalities), query, limits)
    return await recommend.answer(database, state, plan, limits) | {"tags": embedded.tags}


async def similar_to_video(request: Request) -> Response:
    """``GET /similar/{video_id}`` itself (see :func:`similar_to_video_doc`): the hot path,
    answered from memory (no SQL) without FastAPI's dependency solving and response
    validation (:mod:`api.direct`); a thread only when the plan may search deep."""
    video_id = path_video_id(request)
    query = parse_query(SimilarQuery, request)
    served, plan, deep = video_plan(request.app.state, video_id, query)
    database = database_of(request)
    limits: SearchLimits = request.app.state.search_limits
    body = await recommend.answer(database, served, plan, limits, in_thread=deep)
    return json_response(body)


def video_plan(
    app_state: State, video_id: str, query: SimilarQuery
) -> tuple[ServingState, QueryPlan, bool]:
    """What ``GET /similar/{video_id}`` runs: the served snapshot, the plan, and whether the
    plan may search deep (then it runs in a thread). Raises when no index is served."""
    holder: IndexHolder = app_state.holder
    limits: SearchLimits = app_state.search_limits
    served = holder.require_state()
    plan = recommend.plan_of(ByVideo(video_id), query, limits)
    return served, plan, recommend.is_deep(served, plan, limits)


def similar_to_video_doc(
    video_id: VideoIdPath,
) -> SimilarResponse:  # pragma: no cover - documents the route; similar_to_video answers it
    """Nearest videos in the served index, best first, never the video itself nor deleted or
    failed ones, near-duplicates left out; filters search deeper until `k` results or the
    catalog runs out. Pages (`offset`, `page_token`) of one list agree with one request."""
    raise NotImplementedError


router.add_api_route(
    "/similar/{video_id:video}",
    similar_to_video_doc,
    methods=["GET"],
    response_model=SimilarResponse,
    responses={200: {"links": RESULT_LINKS}, **error_responses(400, 404, 409, 422, 503)},
    summary="Videos most similar to a catalog video",
    name="similar_to_video",
    openapi_extra={"parameters": query_parameters(SimilarQuery)},
    route_class_override=direct_route(similar_to_video),
)


def similar_inline(
    app_state: State, path_params: dict[str, str], query_string: bytes
) -> bytes | None:
    """The body of a ``GET /similar/{video_id}`` that needs neither a thread nor the database
    (:class:`api.lane.FastLane`): a valid query of a served video whose plan runs inline. None
    for anything else, errors included: the route then answers it, through the app's error
    handlers, as if the lane were not there."""
    video_id = path_params["video_id"]
    if unroutable_reason(video_id) is not None:
        return None
    try:
        query = parse_query_string(SimilarQuery, query_string)
        served, plan, deep = video_plan(app_state, video_id, query)
        if deep:
            return None
        return json_bytes(pipeline.run(served, plan))
    except Exception:  # noqa: BLE001 - any failure is the route's to answer (and report)
        return None


FIRST_ROUTES = [
    FirstGet("/similar/{video_id:video}", similar_to_video, name="similar_to_video_get")
]
"""Routes the app puts before all others (:class:`api.direct.FirstGet`): the hot path."""


@router.post(
    "/similar",
    response_model=SimilarResponse,
    responses={200: {"links": RESULT_LINKS}, **error_responses(400, 404, 409, 413, 422, 503)},
    summary="Recommend by examples (positive and negative video ids)",
)
async def similar_to_examples(
    query: ExampleQuery, request: Request, holder: HolderDep, database: DatabaseDep
) -> Any:
    state = holder.require_state()
    examples = ByExamples(tuple(query.positive), tuple(query.negative), query.negative_weight)
    limits: SearchLimits = request.app.state.search_limits
    plan = recommend.plan_of(examples, query, limits)
    return await recommend.answer(database, state, plan, limits)
