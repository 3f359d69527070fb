"""Signing in to the console through the ASGI app, as a browser would (cookies, CSRF)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.domain.metrics.models import MetricPoint
from app.main import create_app
from app.settings import Settings
from tests.factories import Key

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@contextmanager
def browser(
    settings: Settings, factory: sessionmaker[Session], base_url: str = "https://testserver"
) -> Iterator[TestClient]:
    """A client that keeps cookies and does not follow redirects (tests look at them)."""
    with TestClient(create_app(settings, factory), base_url=base_url) as client:
        client.follow_redirects = False
        yield client


def sign_in(client: TestClient, key: Key) -> str:
    """Sign ``key`` in; returns the CSRF token its pages' forms carry."""
    form = client.get("/ui/login")
    token = csrf_of(form.text)
    answer = client.post("/ui/login", data={"api_key": key.secret, "csrf": token, "next": "/ui/"})
    assert answer.status_code == 303, answer.text
    return csrf_of(client.get("/ui/").text)


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, html[:2000]
    return found.group(1)


def add_points(
    db: Session, project_id: object, subject_type: str, subject_id: object, **series: list[float]
) -> None:
    """Points of each named metric, one per 10 s ending now."""
    start = utcnow() - timedelta(minutes=10)
    for name, values in series.items():
        for i, value in enumerate(values):
            db.add(
                MetricPoint(
                    project_id=project_id,
                    subject_type=subject_type,
                    subject_id=subject_id,
                    name=name,
                    step=i,
                    timestamp=start + timedelta(seconds=10 * i),
                    value=value,
                )
            )
    db.flush()
