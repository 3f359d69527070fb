"""Secrets stay secret: a key's secret is never stored for replay, viewers never read run
environment values, settings errors never echo their input, and AWS error texts shown to
callers carry no account ids or ARNs."""

from __future__ import annotations

import json
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.backends import sagemaker_requests as req
from app.backends.sagemaker import _translate
from app.cli import cli
from app.domain.access import Role
from app.domain.idempotency.models import IdempotencyRecord
from app.settings import InvalidSettings, get_settings
from tests.factories import LOCAL_SPEC, PEPPER, make_key, make_project, make_run

# --- API key secrets and idempotent replays ---------------------------------------------


def test_a_replayed_key_creation_answers_without_the_secret_and_stores_none(
    client: TestClient, db: Session
) -> None:
    admin = make_key(db, admin=True)
    db.commit()
    headers = admin.headers | {"Idempotency-Key": "create-ci-key-1"}
    first = client.post("/v1/api-keys", json={"name": "ci"}, headers=headers)
    assert first.status_code == 201, first.text
    secret = first.json()["secret"]
    assert secret.startswith("sk_")
    stored = db.scalars(select(IdempotencyRecord)).one()
    assert stored.state == "completed"
    assert secret not in json.dumps(stored.response_body)
    assert stored.response_body["secret"] is None
    replay = client.post("/v1/api-keys", json={"name": "ci"}, headers=headers)
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    body = replay.json()
    assert body["id"] == first.json()["id"]
    assert body["secret"] is None
    assert "shown only once" in body["secret_note"]
    assert secret not in replay.text
    # The key itself works: the secret was right the first time.
    assert client.get("/v1/projects", headers={"Authorization": f"Bearer {secret}"}).is_success


# --- run environment values --------------------------------------------------------------


def test_viewers_see_environment_keys_with_masked_values(client: TestClient, db: Session) -> None:
    editor, viewer = make_key(db), make_key(db)
    project = make_project(db, (editor, Role.EDITOR), (viewer, Role.VIEWER))
    make_run(db, project, spec={"entrypoint": "x.py", "instance_type": "local"})
    db.commit()
    body = {
        "name": "with-env",
        "spec": LOCAL_SPEC | {"environment": {"WANDB_API_KEY": "wb-s3cret-token"}},
    }
    created = client.post(f"/v1/projects/{project.id}/runs", json=body, headers=editor.headers)
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    for key, expected in ((editor, "wb-s3cret-token"), (viewer, "***")):
        one = client.get(f"/v1/runs/{run_id}", headers=key.headers).json()
        assert one["spec"]["environment"] == {"WANDB_API_KEY": expected}
        listed = client.get(f"/v1/projects/{project.id}/runs", headers=key.headers)
        items = {item["id"]: item for item in listed.json()["items"]}
        assert items[run_id]["spec"]["environment"] == {"WANDB_API_KEY": expected}
        assert len(items) == 2  # the run without an environment is listed as it is
    assert (
        "wb-s3cret-token"
        not in client.get(f"/v1/projects/{project.id}/runs", headers=viewer.headers).text
    )


# --- settings errors ---------------------------------------------------------------------


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("fresh_settings")
@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("STRATUS_DATABASE_URL", "postgresql://app:pw-9f8e7d6c@db:not-a-port/x", "DATABASE_URL"),
        ("STRATUS_WORKER__MESSAGE_LEASE_S", "pw-9f8e7d6c", "WORKER__MESSAGE_LEASE_S"),
        ("STRATUS_API__MAX_BODY_BYTES", "pw-9f8e7d6c", "API__MAX_BODY_BYTES"),
    ],
)
def test_a_bad_setting_is_named_but_its_value_never_printed(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidSettings) as caught:
        get_settings()
    printed = "".join(traceback.format_exception(caught.value))
    assert f"STRATUS_{named}" in printed
    assert "pw-9f8e7d6c" not in printed
    assert "input_value" not in printed


@pytest.mark.usefixtures("fresh_settings")
def test_the_cli_reports_a_bad_setting_without_its_value(tmp_path: Path) -> None:
    env = {
        "STRATUS_ENV": "test",
        "STRATUS_KEY_PEPPER": PEPPER,
        "STRATUS_BROKER_URL": "memory://",
        "STRATUS_DATABASE_URL": "postgresql://app:pw-9f8e7d6c@db:not-a-port/x",
    }
    result = CliRunner().invoke(cli, ["db", "upgrade"], env=env)
    assert result.exit_code == 2
    assert "STRATUS_DATABASE_URL" in result.stderr
    assert "pw-9f8e7d6c" not in result.output
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("fresh_settings")
def test_a_short_key_pepper_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRATUS_ENV", "prod")
    monkeypatch.setenv("STRATUS_KEY_PEPPER", "pepper-abc")
    with pytest.raises(InvalidSettings) as caught:
        get_settings()
    printed = "".join(traceback.format_exception(caught.value))
    assert "STRATUS_KEY_PEPPER must be set" in printed
    assert "pepper-abc" not in printed


# --- AWS error texts ---------------------------------------------------------------------

ROLE = "arn:aws:iam::123456789012:role/StratusTraining"


def test_backend_errors_from_aws_drop_account_ids_and_arns() -> None:
    error = ClientError(
        {
            "Error": {
                "Code": "AccessDeniedException",
                "Message": f"User: arn:aws:sts::123456789012:assumed-role/ops/x is not "
                f"authorized to perform: iam:PassRole on resource: {ROLE} (account 123456789012)",
            },
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        "CreateTrainingJob",
    )
    message = str(_translate(error))
    assert "123456789012" not in message
    assert "arn:aws" not in message
    assert message.startswith("CreateTrainingJob: AccessDeniedException: User: <arn> is not")
    assert "on resource: <arn> (account <account>)" in message


def test_failure_reasons_described_by_aws_are_scrubbed() -> None:
    described = {
        "TrainingJobName": "job",
        "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/job",
        "TrainingJobStatus": "Failed",
        "FailureReason": f"ClientError: {ROLE} cannot read s3://b/k; image "
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1",
    }
    status = req.job_status(described)
    assert status.failure_reason == (
        "ClientError: <arn> cannot read s3://b/k; "
        "image <account>.dkr.ecr.us-east-1.amazonaws.com/x:1"
    )
    endpoint = req.endpoint_status(
        "ep", {"EndpointStatus": "Failed", "FailureReason": f"role {ROLE} denied"}
    )
    assert endpoint.failure_reason == "role <arn> denied"
    # Names Stratus made stay readable: uuids and timestamps are not account ids.
    assert req.scrub("job stratus-0192a3b4c5d67e8f at 1733480000123") == (
        "job stratus-0192a3b4c5d67e8f at 1733480000123"
    )


@pytest.mark.usefixtures("fresh_settings")
def test_an_unparsable_settings_group_is_reported_without_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRATUS_API", '{"max_body_bytes": "pw-9f8e7d6c')
    with pytest.raises(InvalidSettings) as caught:
        get_settings()
    printed = "".join(traceback.format_exception(caught.value))
    assert 'field "api"' in printed
    assert "pw-9f8e7d6c" not in printed
