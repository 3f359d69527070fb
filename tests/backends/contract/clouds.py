"""Harnesses for the three REST clouds: the backend under test on its fake, built from
``STRATUS_BACKENDS__<NAME>__*`` settings (so a child process can build the same one), with the
real credential exchange against the fake's token endpoint."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.backends import naming
from app.backends.azureml import AzureMLBackend
from app.backends.base import Backend, EndpointSpec, TrainingJobSpec
from app.backends.vertex import VertexBackend
from app.backends.watsonx import WatsonxBackend
from app.ids import uuid7
from app.settings import Settings
from tests.fakes.azureml import FakeAzureML
from tests.fakes.base import FakeCloud
from tests.fakes.vertex import FakeVertex
from tests.fakes.watsonx import FakeWatsonx

FAKES: dict[str, type[FakeCloud]] = {
    "vertex": FakeVertex,
    "azureml": FakeAzureML,
    "watsonx": FakeWatsonx,
}
BUILD: dict[str, type[VertexBackend | AzureMLBackend | WatsonxBackend]] = {
    "vertex": VertexBackend,
    "azureml": AzureMLBackend,
    "watsonx": WatsonxBackend,
}
INSTANCE = {"vertex": "n1-standard-4", "azureml": "Standard_DS3_v2", "watsonx": "S"}
COMMON = {"ENABLED": "true", "API_RATE_PER_S": "100000", "API_BURST": "100000"}


def service_account_key(directory: Path, token_url: str) -> Path:
    """A freshly generated service-account key file whose token URI is the fake's."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path = directory / "service-account.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "client_email": "stratus@demo.iam.gserviceaccount.com",
                "private_key": pem,
                "token_uri": f"{token_url}/token",
            }
        )
    )
    return path


def cloud_env(name: str, url: str, directory: Path) -> dict[str, str]:
    """Environment variables that point the ``name`` backend at its fake."""
    values = dict(COMMON, BASE_URL=url, OPERATION_TIMEOUT_S="10")
    if name == "vertex":
        values |= {"PROJECT": "demo", "LOCATION": "us-central1", "SERVING_IMAGE": "img:1"}
        values["BASE_URL"] = f"{url}/v1"
        values["CREDENTIALS_FILE"] = str(service_account_key(directory, url))
    elif name == "azureml":
        values |= {"SUBSCRIPTION_ID": "sub-1", "RESOURCE_GROUP": "rg", "WORKSPACE": "ws"}
        values |= {"COMPUTE": "cpu-cluster", "ENVIRONMENT": "azureml:stratus-env:1"}
        values |= {"TENANT_ID": "tenant-1", "CLIENT_ID": "app-1", "CLIENT_SECRET": "s3cret"}
        values["AUTHORITY_URL"] = url
    else:
        values |= {"SPACE_ID": "space-1", "API_KEY": "ibm-key", "IAM_URL": f"{url}/identity/token"}
    return {f"STRATUS_BACKENDS__{name.upper()}__{k}": v for k, v in values.items()}


class CloudHarness:
    """A REST cloud backend on its fake: time moves by ``advance``, faults by hooks."""

    supports_throttling = True
    counts_calls = True

    def __init__(self, name: str, fake: FakeCloud, settings: Settings) -> None:
        self.name = name
        self.fake = fake
        self.backend: Backend = BUILD[name](settings)

    def job_spec(self, job_name: str | None = None) -> TrainingJobSpec:
        return TrainingJobSpec(
            job_name=job_name or naming.job_name(uuid7()),
            instance_type=INSTANCE[self.name],
            instance_count=2,
            max_runtime_seconds=3600,
            entrypoint="train.py",
            image="us-docker.pkg.dev/demo/train:1",
            hyperparameters={"epochs": 3},
            output_location="gs://demo/out/" if self.name == "vertex" else "s3://demo/out/",
            tags={"stratus:project-id": str(uuid.uuid4())},
        )

    def jobs_named(self, job_name: str) -> int:
        return self.fake.count_named(job_name)

    def finish(self, job_name: str, ok: bool = True) -> None:
        self.fake.finish(job_name, ok)

    def settle(self) -> None:
        self.fake.advance(5.0)

    def lose_next_submit_answer(self) -> None:
        self.fake.drop_next(next(n for n in _CREATE_ROUTES if n in self.fake.routes_named()))

    def throttle(self, requests: int) -> None:
        self.fake.throttle(requests)

    def api_calls(self) -> int:
        return sum(self.fake.calls.values())

    def endpoint_spec(self, endpoint_name: str, count: int) -> EndpointSpec:
        return EndpointSpec(
            endpoint_name=endpoint_name,
            artifact_uri="gs://demo/model/" if self.name == "vertex" else "s3://demo/model/",
            instance_type=INSTANCE[self.name],
            instance_count=count,
        )

    def replicas(self, endpoint_name: str) -> int:
        return self.fake.replicas(endpoint_name)

    def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()


_CREATE_ROUTES = ("customJobs.create", "jobs.create", "trainings.create")
