"""The Celery application's contract: reliability settings, names and the beat schedule."""

from __future__ import annotations

from app.settings import Settings
from workers.celery_app import backend_schedule, celery_app, transport_options


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
        "optimizer_pass": "stratus.optimizer.pass",
        # The local backend is on by default; each enabled backend gets its pollers.
        "poll_runs_local": "stratus.runs.schedule_poll",
        "poll_endpoints_local": "stratus.deployments.schedule_poll",
        "pull_endpoint_metrics_local": "stratus.deployments.pull_metrics",
    }
    assert all(entry["task"] in celery_app.tasks for entry in schedule.values())
    assert celery_app.conf.beat_scheduler == "workers.beat:GuardedScheduler"


def test_each_enabled_backend_gets_its_pollers() -> None:
    settings = Settings(
        backends={
            "local": {"enabled": False},
            "sagemaker": {"enabled": True, "poll_interval_s": 20},
        }
    )
    schedule = backend_schedule(settings)
    assert set(schedule) == {
        "poll_runs_sagemaker",
        "poll_endpoints_sagemaker",
        "pull_endpoint_metrics_sagemaker",
    }
    assert schedule["poll_runs_sagemaker"]["schedule"] == 20
    assert schedule["poll_runs_sagemaker"]["args"] == ("sagemaker",)


def test_each_enabled_cloud_backend_gets_its_pollers() -> None:
    backends = {
        "local": {"enabled": False},
        "vertex": {"enabled": True, "poll_interval_s": 7.0},
        "watsonx": {"enabled": True},
    }
    schedule = backend_schedule(Settings(backends=backends))  # type: ignore[arg-type]
    kinds = ("poll_runs", "poll_endpoints", "pull_endpoint_metrics")
    assert set(schedule) == {f"{k}_{n}" for k in kinds for n in ("vertex", "watsonx")}
    assert schedule["poll_runs_vertex"]["schedule"] == 7.0
    assert schedule["poll_runs_watsonx"]["args"] == ("watsonx",)
