"""The console's route class: errors become pages, a missing session a redirect, never a 500
page for bad input, and every answer carries the console's security headers."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from starlette.responses import Response

from app.errors import AppError
from app.ui.auth import SignInNeeded
from app.ui.rendering import error_page, secured


class UiRoute(APIRoute):
    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs["include_in_schema"] = False
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return secured(await handler(request))
            except SignInNeeded as signal:
                return secured(RedirectResponse(signal.next_path, status_code=303))
            except RequestValidationError:
                # Only path and query parameters are validated here: a malformed id names
                # nothing that exists.
                return error_page(request, 404, "Not found", "There is nothing at this address.")
            except AppError as error:
                return error_page(request, error.status, error.title, error.detail)
            except HTTPException as error:
                return error_page(request, error.status_code, "Error", str(error.detail))

        return handle
