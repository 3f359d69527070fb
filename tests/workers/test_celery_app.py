"""The Celery application's contract: reliability settings, names and the beat schedule."""

from __future__ import annotations

from workers.celery_app import celery_app, transport_options


def test_reliability_settings() -> None:
    conf = celery_app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_ignore_result is True
    assert not conf.result_backend
    assert conf.task_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.task_default_queue == "stratus"


def test_redis_redelivers_only_after_the_longest_task() -> None:
    limit = celery_app.conf.task_time_limit
    assert transport_options("redis://127.0.0.1:6379/0", limit)["visibility_timeout"] > limit
    # The embedded broker's transport hands its options to create_engine: none it rejects.
    assert transport_options("sqla+sqlite:///broker.db", limit) == {}


def test_beat_schedule_names_registered_tasks() -> None:
    celery_app.loader.import_default_modules()
    schedule = celery_app.conf.beat_schedule
    assert {name: entry["task"] for name, entry in schedule.items()} == {
        "relay_outbox": "stratus.outbox.relay",
        "housekeeping": "stratus.housekeeping.run",
    }
    assert all(entry["task"] in celery_app.tasks for entry in schedule.values())
    assert celery_app.conf.beat_scheduler == "workers.beat:GuardedScheduler"
