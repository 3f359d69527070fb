"""The app's operations as served: method, full path and the route that answers them, however
routers are nested (so tests that walk every route cover routes added later)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    route: APIRoute


def operations(app: FastAPI) -> list[Operation]:
    """Every (method, path) of the API an ``APIRoute`` of ``app`` serves, in registration order.

    Routes left out of the OpenAPI schema (the console's pages under /ui/) are not API
    operations; tests/ui/ covers them."""
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or context.path is None or not route.include_in_schema:
            continue
        for method in sorted(context.methods or ()):
            if method != "HEAD":
                found.append(Operation(method, context.path, route))
    return found
