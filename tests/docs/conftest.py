"""Committed data for tests that serve the app over a real socket."""

from tests.workers.conftest import committed  # noqa: F401 - fixture
