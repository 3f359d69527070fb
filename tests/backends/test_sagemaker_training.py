"""Training jobs on SageMaker (moto): submit mapping, idempotent resubmit, polling, stop."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto.core.utils import utcnow
from moto.sagemaker.models import SageMakerModelBackend

from app.backends import naming
from app.backends.base import Backend, BackendError, JobState, MetricDefinition
from app.backends.sagemaker import SageMakerBackend
from tests.backends.conftest import ROLE, job_spec, make_backend, new_job_name


def _in_progress(moto_sm: SageMakerModelBackend, *names: str, minutes_ago: int = 10) -> None:
    """Moto finishes jobs at once; put them back to running, last touched a while ago."""
    for name in names:
        job = moto_sm.training_jobs[name]
        job.training_job_status = "InProgress"
        job.secondary_status = "Training"
        job.training_end_time = None
        job.last_modified_time = utcnow() - timedelta(minutes=minutes_ago)


def _finish(moto_sm: SageMakerModelBackend, name: str, status: str, **attrs: Any) -> None:
    job = moto_sm.training_jobs[name]
    job.training_job_status = job.secondary_status = status
    job.training_end_time = job.last_modified_time = utcnow()
    for key, value in attrs.items():
        setattr(job, key, value)


def test_is_a_backend(backend: SageMakerBackend) -> None:
    assert isinstance(backend, Backend)
    assert backend.name == "sagemaker"


def test_create_training_job_maps_the_spec(
    backend: SageMakerBackend, moto_sm: SageMakerModelBackend
) -> None:
    sent: dict[str, Any] = {}
    backend.sm.meta.events.register(
        "before-parameter-build.sagemaker.CreateTrainingJob",
        lambda params, **_: sent.update(params),
    )
    spec = job_spec(
        hyperparameters={"epochs": 5, "lr": 0.05, "amp": True, "optimizer": "adam"},
        input_channels={"train": "s3://data/train/", "test": "s3://data/test/"},
        metric_definitions=[MetricDefinition("loss", r"loss=([0-9.]+)")],
        environment={"WANDB_MODE": "offline"},
        instance_type="ml.g4dn.xlarge",
        instance_count=2,
        volume_size_gb=50,
        max_runtime_seconds=3600,
        use_spot=True,
        max_wait_seconds=7200,
    )

    arn = backend.submit_training(spec)

    job = moto_sm.training_jobs[spec.job_name]
    assert arn == job.arn
    assert job.hyper_parameters == {
        "epochs": "5",
        "lr": "0.05",
        "amp": "true",
        "optimizer": "adam",
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": "s3://stratus-code/src.tar.gz",
        "sagemaker_region": "us-east-1",
    }
    assert job.algorithm_specification["TrainingImage"] == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.1.0-gpu-py310"
    )
    assert {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in job.input_data_config} == {
        name: {
            "S3DataType": "S3Prefix",
            "S3Uri": uri,
            "S3DataDistributionType": "FullyReplicated",
        }
        for name, uri in spec.input_channels.items()
    }
    assert job.output_data_config == {"S3OutputPath": "s3://stratus-artifacts/runs"}
    assert job.resource_config == {
        "InstanceType": "ml.g4dn.xlarge",
        "InstanceCount": 2,
        "VolumeSizeInGB": 50,
    }
    assert job.stopping_condition == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert job.enable_managed_spot_training is True
    assert job.role_arn == ROLE
    assert job.tags == [{"Key": "stratus:run-id", "Value": str(naming.run_id_of(spec.job_name))}]
    # Moto replaces MetricDefinitions with its own, so check what went to AWS.
    assert sent["AlgorithmSpecification"]["MetricDefinitions"] == [
        {"Name": "loss", "Regex": r"loss=([0-9.]+)"}
    ]
    assert sent["Environment"] == {"WANDB_MODE": "offline"}


def test_resubmit_returns_the_same_job(
    backend: SageMakerBackend, moto_sm: SageMakerModelBackend, calls: Counter[str]
) -> None:
    spec = job_spec()
    first = backend.submit_training(spec)
    _in_progress(moto_sm, spec.job_name)

    again = backend.submit_training(spec)

    assert again == first
    assert list(moto_sm.training_jobs) == [spec.job_name]
    # The refused create did not replace the running job.
    assert moto_sm.training_jobs[spec.job_name].training_job_status == "InProgress"
    assert calls == {"CreateTrainingJob": 2, "DescribeTrainingJob": 1}


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"role_arn": None}, "no IAM role"),
        ({"source_dir": "./src"}, "s3://"),
        ({"source_dir": "s3://code/src/"}, ".tar.gz"),
        ({"source_dir": None}, "needs source_dir"),
        ({"input_channels": {"train": "file:///data"}}, "input channel 'train'"),
        ({"output_location": None}, "output_location"),
        ({"framework": None}, "image or a framework"),
        ({"framework": "jax", "framework_version": "0.4"}, "sagemaker SDK is not installed"),
        ({"hyperparameters": {"blob": "x" * 3000}}, "longer than 2500"),
    ],
)
def test_unrunnable_specs_are_not_retryable(
    aws: None, overrides: dict[str, Any], words: str
) -> None:
    backend = make_backend(role_arn=None)
    with pytest.raises(BackendError) as caught:
        backend.submit_training(job_spec(**overrides))
    assert caught.value.retryable is False
    assert words in str(caught.value)


def test_role_falls_back_to_settings(
    backend: SageMakerBackend, moto_sm: SageMakerModelBackend
) -> None:
    spec = job_spec(role_arn=None, image="123.dkr.ecr.us-east-1.amazonaws.com/mine:1")
    backend.submit_training(spec)
    assert moto_sm.training_jobs[spec.job_name].role_arn == ROLE


def test_describe_jobs_describes_only_jobs_whose_state_moved(
    backend: SageMakerBackend, moto_sm: SageMakerModelBackend, calls: Counter[str]
) -> None:
    names = [new_job_name() for _ in range(5)]
    for name in names:
        backend.submit_training(job_spec(job_name=name))
    _in_progress(moto_sm, *names)
    done, failed, stopped, busy, quiet = names
    _finish(
        moto_sm,
        done,
        "Completed",
        final_metric_data_list=[{"MetricName": "loss", "Value": 0.25, "Timestamp": utcnow()}],
        billable_time_in_seconds=600,
    )
    _finish(moto_sm, failed, "Failed", failure_reason="AlgorithmError: exit code 1")
    _finish(moto_sm, stopped, "Stopped")
    moto_sm.training_jobs[busy].secondary_status = "Uploading"
    moto_sm.training_jobs[busy].last_modified_time = utcnow()
    calls.clear()

    statuses = backend.describe_jobs(dict.fromkeys(names, JobState.RUNNING))

    assert set(statuses) == {done, failed, stopped}
    assert calls == {"ListTrainingJobs": 1, "DescribeTrainingJob": 3}
    assert statuses[done].state is JobState.COMPLETED
    assert statuses[done].artifact_uri == f"s3://stratus-artifacts/runs/{done}/output/model.tar.gz"
    assert statuses[done].final_metrics == {"loss": 0.25}
    assert statuses[done].billable_seconds == 600.0
    assert statuses[done].external_id == moto_sm.training_jobs[done].arn
    assert statuses[failed].state is JobState.FAILED
    assert statuses[failed].failure_reason == "AlgorithmError: exit code 1"
    assert statuses[failed].artifact_uri is None
    assert statuses[stopped].state is JobState.STOPPED


def test_describe_jobs_lists_only_changes_since_the_last_poll(
    backend: SageMakerBackend, moto_sm: SageMakerModelBackend
) -> None:
    names = [new_job_name() for _ in range(3)]
    for name in names:
        backend.submit_training(job_spec(job_name=name))
    _in_progress(moto_sm, *names, minutes_ago=30)
    sent: dict[str, Any] = {}
    backend.sm.meta.events.register(
        "before-parameter-build.sagemaker.ListTrainingJobs",
        lambda params, **_: sent.update(params),
    )
    since = datetime.now(UTC) - timedelta(minutes=5)
    _finish(moto_sm, names[0], "Completed")
    # Changed before the window: already seen by an earlier poll, so not listed now.
    _finish(moto_sm, names[1], "Failed")
    moto_sm.training_jobs[names[1]].last_modified_time = utcnow() - timedelta(minutes=20)

    statuses = backend.describe_jobs(dict.fromkeys(names, JobState.RUNNING), changed_since=since)

    assert set(statuses) == {names[0]}
    assert sent["LastModifiedTimeAfter"] == since
    assert sent["NameContains"] == "stratus"
    assert sent["CreationTimeAfter"] < since


def test_unknown_known_state_is_described_and_foreign_names_are_absent(
    backend: SageMakerBackend, moto_sm: SageMakerModelBackend
) -> None:
    name = new_job_name()
    backend.submit_training(job_spec(job_name=name))
    _in_progress(moto_sm, name)
    statuses = backend.describe_jobs(
        {name: JobState.UNKNOWN, "stratus-r-nosuchjob": JobState.RUNNING}
    )
    assert set(statuses) == {name}
    assert statuses[name].state is JobState.RUNNING
    assert statuses[name].secondary_status == "Training"
    assert backend.describe_jobs({}) == {}


def test_polling_a_thousand_jobs_costs_under_a_twentieth_call_per_job(
    backend: SageMakerBackend, moto_sm: SageMakerModelBackend, calls: Counter[str]
) -> None:
    spec = job_spec()
    names = [new_job_name() for _ in range(1000)]
    for name in names:  # straight into moto: the setup is not what is measured
        moto_sm.create_training_job(
            training_job_name=name,
            hyper_parameters={},
            algorithm_specification={"TrainingImage": "img", "TrainingInputMode": "File"},
            role_arn=ROLE,
            input_data_config=[],
            output_data_config={"S3OutputPath": spec.output_location or ""},
            resource_config={"InstanceType": "ml.m5.large", "InstanceCount": 1},
            vpc_config={},
            stopping_condition={"MaxRuntimeInSeconds": 3600},
            tags=[],
            enable_network_isolation=False,
            enable_inter_container_traffic_encryption=False,
            enable_managed_spot_training=False,
            checkpoint_config={},
            debug_hook_config={},
            debug_rule_configurations=[],
            tensor_board_output_config={},
            experiment_config={},
        )
    _in_progress(moto_sm, *names, minutes_ago=30)
    since = datetime.now(UTC) - timedelta(minutes=5)
    for name in names[:200]:  # 20 % moved on to another secondary status
        moto_sm.training_jobs[name].secondary_status = "Uploading"
        moto_sm.training_jobs[name].last_modified_time = utcnow()
    for name in names[200:220]:  # 2 % finished
        _finish(moto_sm, name, "Completed")

    statuses = backend.describe_jobs(dict.fromkeys(names, JobState.RUNNING), changed_since=since)

    assert set(statuses) == set(names[200:220])
    assert calls["DescribeTrainingJob"] == 20
    assert sum(calls.values()) / len(names) <= 0.05


def test_paging_stops_once_every_known_job_was_seen(
    backend: SageMakerBackend, moto_sm: SageMakerModelBackend, calls: Counter[str]
) -> None:
    names = [new_job_name() for _ in range(150)]
    for name in names:
        backend.submit_training(job_spec(job_name=name))
    _in_progress(moto_sm, *names)
    calls.clear()
    # Moto lists in creation order (AWS: newest first, as asked); the first page holds them.
    statuses = backend.describe_jobs(dict.fromkeys(names[:3], JobState.RUNNING))
    assert statuses == {}
    assert calls == {"ListTrainingJobs": 1}


def test_stop_training_makes_the_real_call(
    backend: SageMakerBackend, moto_sm: SageMakerModelBackend, calls: Counter[str]
) -> None:
    running, finished = new_job_name(), new_job_name()
    backend.submit_training(job_spec(job_name=running))
    backend.submit_training(job_spec(job_name=finished))
    _in_progress(moto_sm, running)
    calls.clear()

    backend.stop_training(running)
    backend.stop_training(finished)  # refused by SageMaker: already completed
    backend.stop_training(new_job_name())  # never existed

    assert moto_sm.training_jobs[running].training_job_status == "Stopping"
    assert calls["StopTrainingJob"] == 3
    statuses = backend.describe_jobs({running: JobState.RUNNING})
    assert statuses[running].state is JobState.STOPPING


def test_training_metrics_come_with_the_describe(backend: SageMakerBackend) -> None:
    page = backend.fetch_training_metrics(new_job_name(), "cursor-1")
    assert list(page.points) == []
    assert page.next_cursor == "cursor-1"
