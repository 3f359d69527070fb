"""What every part of the client shares: paged lists, polling, and the projects section."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from .errors import StratusError
from .models import Project, Resource

if TYPE_CHECKING:
    from .client import Client

R = TypeVar("R", bound=Resource)
T = TypeVar("T")
Ident = str | uuid.UUID
PAGE = 100
CHUNK = 1 << 16


def as_uuid(value: Ident) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


class Section:
    def __init__(self, client: Client) -> None:
        self._client = client
        self._http = client.http

    def _one(self, model: type[R], response: httpx.Response) -> R:
        return model.model_validate(response.json()).bind(self._client)

    def _all(
        self, model: type[R], path: str, params: Mapping[str, Any], limit: int | None
    ) -> list[R]:
        return collect(self._client, model, path, params, limit)


def collect(
    client: Client, model: type[R], path: str, params: Mapping[str, Any], limit: int | None
) -> list[R]:
    """Every item of a paged list (up to ``limit``), following ``next_cursor``."""
    items: list[R] = []
    cursor = None
    while True:
        page = dict(params) | {"cursor": cursor, "limit": min(PAGE, limit or PAGE)}
        body = client.http.request("GET", path, params=page).json()
        items += [model.model_validate(i).bind(client) for i in body["items"]]
        cursor = body.get("next_cursor")
        if not cursor or (limit is not None and len(items) >= limit):
            return items[:limit] if limit is not None else items


def poll(
    read: Callable[[], T],
    done: Callable[[T], bool],
    timeout: float | None,
    poll_s: float,
    what: str,
) -> T:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        current = read()
        if done(current):
            return current
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"the {what} did not settle within {timeout} s")
        time.sleep(poll_s)


class Projects(Section):
    def list(self, limit: int | None = None) -> list[Project]:
        return self._all(Project, "/v1/projects", {}, limit)

    def get(self, project: Ident) -> Project:
        """A project by id or by name."""
        project_id = as_uuid(project)
        if project_id is None:
            for candidate in self.list():
                if candidate.name == project:
                    return candidate
            raise StratusError(404, "not_found", f"No project named {project!r} is visible.")
        return self._one(Project, self._http.request("GET", f"/v1/projects/{project_id}"))

    def create(
        self, name: str, description: str = "", default_backend: str | None = None
    ) -> Project:
        body: dict[str, Any] = {"name": name, "description": description}
        if default_backend:
            body["default_backend"] = default_backend
        return self._one(Project, self._http.request("POST", "/v1/projects", json=body))

    def resolve(self, project: Ident) -> uuid.UUID:
        """A project's id, from its id or its name."""
        return as_uuid(project) or self.get(project).id
