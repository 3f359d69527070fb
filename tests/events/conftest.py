"""Worker fixtures shared with the worker tests: committed data and settings on the test
database."""

from tests.workers.conftest import (  # noqa: F401 - fixtures
    app_on_pg,
    celery_queue,
    committed,
)
