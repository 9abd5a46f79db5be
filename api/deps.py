"""Typed dependencies: settings, the live index holder and DB sessions.

Routes take the holder and call ``holder.require_state()`` once, after FastAPI has validated
the parameters (so a bad request is a 422 even while no index is loaded), and use that one state
to the end of the request, even if a swap happens meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import QueryParams

from api.config import ApiOptions
from api.index_holder import IndexHolder
from api.schemas import FilteredQuery
from recsys.db import Database
from recsys.settings import Settings

ModelT = TypeVar("ModelT", bound=BaseModel)


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_options(request: Request) -> ApiOptions:
    return request.app.state.options  # type: ignore[no-any-return]


async def get_holder(request: Request) -> IndexHolder:
    return request.app.state.holder  # type: ignore[no-any-return]


async def get_database(request: Request) -> Database:
    return request.app.state.database  # type: ignore[no-any-return]


def database_of(request: Request) -> Database:
    """What :data:`DatabaseDep` gives a route, for handlers that take the request itself
    (:mod:`api.direct`): the app's database, or a zero-argument override of
    :func:`get_database` in ``app.dependency_overrides`` (how tests swap the database)."""
    override = request.app.dependency_overrides.get(get_database)
    if override is not None:
        return override()  # type: ignore[no-any-return]
    return request.app.state.database  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings)]
OptionsDep = Annotated[ApiOptions, Depends(get_options)]
HolderDep = Annotated[IndexHolder, Depends(get_holder)]
DatabaseDep = Annotated[Database, Depends(get_database)]


def get_session(database: DatabaseDep) -> Iterator[Session]:
    with database.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """OpenAPI query parameters of a model parsed by :func:`parse_query` (for the docs)."""
    schema = model.model_json_schema()
    defs = schema.get("$defs") or {}
    parameters = []
    for name, prop in schema["properties"].items():
        prop = dict(_inlined(prop, defs))
        description = prop.pop("description", None)
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": False}
        if description:
            parameter["description"] = description
        parameter["schema"] = prop
        if prop.get("type") == "array":
            parameter.update(style="form", explode=True)
        parameters.append(parameter)
    return parameters


def _inlined(schema: Any, defs: dict[str, Any]) -> Any:
    """``schema`` with its ``#/$defs/...`` references replaced by their definitions (in a
    parameter, such a reference would point into the OpenAPI document, where nothing is)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inlined(defs[ref.removeprefix("#/$defs/")], defs)
        return {key: _inlined(value, defs) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_inlined(item, defs) for item in schema]
    return schema


def parse_query(model: type[ModelT], request: Request) -> ModelT:
    """Validate a request's query string against ``model`` in one pydantic pass.

    FastAPI's per-parameter machinery costs more than the whole search on the hot path;
    errors come out as the same 422 body as any other invalid request, and a parameter the
    model does not know is one of them (a misspelt ``categroy=`` must not be ignored). A query
    string seen before gives the model parsed then (the same object: routes never change it).
    """
    return parse_query_string(model, request.scope["query_string"])


def parse_query_string(model: type[ModelT], query_string: bytes) -> ModelT:
    """:func:`parse_query` of a raw query string (an ASGI scope's ``query_string``)."""
    key = (model, query_string)
    known = _PARSED.get(key)
    if known is not None:
        return known  # type: ignore[return-value]
    parsed = _parsed(model, QueryParams(query_string))
    if len(_PARSED) >= PARSED_QUERIES:
        _PARSED.clear()
    _PARSED[key] = parsed
    return parsed


PARSED_QUERIES = 1024
"""Query strings whose parsed model is kept (a few parameter sets make most of the traffic)."""
_PARSED: dict[tuple[type[BaseModel], bytes], BaseModel] = {}
"""Parsed queries by (model, raw query string): shared, so never modified by a route."""


def _parsed(model: type[ModelT], params: QueryParams) -> ModelT:
    data: dict[str, Any] = {}
    fields = model.model_fields
    for name in params:
        field = fields.get(name)
        if field is None:
            data[name] = params[name]  # refused below: extra="forbid" names it
            continue
        is_list = getattr(field.annotation, "__origin__", None) is list
        data[name] = params.getlist(name) if is_list else params[name]
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": ("query", *e["loc"])} for e in error.errors(include_url=False)]
        ) from None


async def filtered_query(request: Request) -> FilteredQuery:
    return parse_query(FilteredQuery, request)


FilteredQueryDep = Annotated[FilteredQuery, Depends(filtered_query)]
