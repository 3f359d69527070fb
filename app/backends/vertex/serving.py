"""Vertex AI endpoints: a model upload, an endpoint, one deployed model with a fixed replica
count (``:deployModel``, ``:mutateDeployedModel``), raw predictions passed through.

The endpoint and model ids are chosen by Stratus (409 ALREADY_EXISTS means done). Their creation
operations are quick and waited for here; the deployment operation is not, its progress is
read from the endpoint's operations by ``describe_endpoints``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from app.backends.base import (
    BackendError,
    EndpointSpec,
    EndpointState,
    EndpointStatus,
    Invocation,
)
from app.backends.cloud.common import wait_until
from app.backends.cloud.http import CloudHttp
from app.backends.vertex import shapes
from app.settings import VertexSettings

MISSING = frozenset({404})
EXISTS = frozenset({409})


class VertexServing:
    """Endpoint operations over the client of VertexBackend."""

    config: VertexSettings
    http: CloudHttp
    parent: str

    def _endpoint_path(self, endpoint_name: str) -> str:
        return f"/{self.parent}/endpoints/{endpoint_name}"

    def _get(self, path: str) -> dict[str, Any] | None:
        answer = self.http.call("GET", path, tolerate=MISSING)
        return None if answer is None else answer.body

    def _operations(self, endpoint_name: str) -> list[Mapping[str, Any]]:
        body = self._get(f"{self._endpoint_path(endpoint_name)}/operations")
        return list((body or {}).get("operations", []))

    def _await(self, operation: Mapping[str, Any] | None, resource: str, what: str) -> None:
        """Wait for a creation operation (or, if it was created before, for the resource)."""
        op_name = str(operation.get("name", "")) if operation else ""

        def done() -> bool | None:
            if not op_name:
                return True if self._get(resource) is not None else None
            op = self.http.must("GET", f"/{op_name}")
            if op.get("done") and op.get("error"):
                message = op["error"].get("message", "")
                raise BackendError(f"vertex {what} failed: {message}", retryable=False)
            return True if op.get("done") else None

        wait_until(done, self.config.operation_timeout_s, f"vertex {what}")

    def create_endpoint(self, spec: EndpointSpec) -> EndpointStatus:
        """Upload the model and create the endpoint (each kept if there), then deploy once."""
        image = spec.image or self.config.serving_image
        if not image:
            raise BackendError(
                "no serving image: give the model an image or set "
                "STRATUS_BACKENDS__VERTEX__SERVING_IMAGE",
                retryable=False,
            )
        name = spec.endpoint_name
        model = f"/{self.parent}/models/{shapes.model_id(name)}"
        upload = self.http.call(
            "POST",
            f"/{self.parent}/models:upload",
            json=shapes.uploaded_model(spec, image, self.config.service_account),
            tolerate=EXISTS,
        )
        created = self.http.call(
            "POST",
            f"/{self.parent}/endpoints",
            params={"endpointId": name},
            json={"displayName": name, "labels": {shapes.MANAGED: "true"}},
            tolerate=EXISTS,
        )
        self._await(upload.body if upload else None, model, "model upload")
        self._await(created.body if created else None, self._endpoint_path(name), "endpoint")
        status = self._status(name)
        if status.state == EndpointState.CREATING and not self._deploying(name):
            self.http.must(
                "POST",
                f"{self._endpoint_path(name)}:deployModel",
                json=shapes.deploy_request(model.lstrip("/"), spec),
            )
        return self._status(name)

    def _deploying(self, name: str) -> bool:
        return any(
            not op.get("done") and "DeployModel" in str(op.get("metadata", {}).get("@type", ""))
            for op in self._operations(name)
        )

    def _status(self, name: str) -> EndpointStatus:
        endpoint = self._get(self._endpoint_path(name))
        operations = self._operations(name) if endpoint is not None else []
        return shapes.endpoint_status(name, endpoint, operations)

    def update_capacity(self, endpoint_name: str, instance_count: int) -> EndpointStatus:
        """:mutateDeployedModel to ``instance_count`` replicas, once the endpoint is idle."""
        endpoint = self._get(self._endpoint_path(endpoint_name))
        if endpoint is None:
            raise BackendError(f"endpoint {endpoint_name} does not exist", retryable=False)
        status = shapes.endpoint_status(endpoint_name, endpoint, self._operations(endpoint_name))
        if status.state == EndpointState.IN_SERVICE and status.current_instances == instance_count:
            return status
        deployed = shapes.deployed_model_id(endpoint)
        if status.state != EndpointState.IN_SERVICE or deployed is None:
            raise BackendError(
                f"endpoint {endpoint_name} is {status.state}; capacity changes once in service",
                retryable=True,
            )
        self.http.must(
            "POST",
            f"{self._endpoint_path(endpoint_name)}:mutateDeployedModel",
            json={
                "deployedModel": {
                    "id": deployed,
                    "dedicatedResources": shapes.replicas(instance_count),
                },
                "updateMask": "dedicatedResources.minReplicaCount,"
                "dedicatedResources.maxReplicaCount",
            },
        )
        return self._status(endpoint_name)

    def delete_endpoint(self, endpoint_name: str) -> None:
        """Undeploy, delete the endpoint, delete the model; missing ones are fine."""
        path = self._endpoint_path(endpoint_name)
        endpoint = self._get(path)
        if endpoint is not None:
            deployed = shapes.deployed_model_id(endpoint)
            if deployed is not None:
                op = self.http.call(
                    "POST",
                    f"{path}:undeployModel",
                    json={"deployedModelId": deployed},
                    tolerate=MISSING,
                )
                self._await(op.body if op else {}, path, "undeploy")
            self.http.call("DELETE", path, tolerate=MISSING)
        model = f"/{self.parent}/models/{shapes.model_id(endpoint_name)}"
        self.http.call("DELETE", model, tolerate=MISSING)

    def describe_endpoints(self, endpoint_names: Sequence[str]) -> Mapping[str, EndpointStatus]:
        """Each endpoint and its unfinished operations; a missing endpoint reports GONE."""
        return {name: self._status(name) for name in endpoint_names}

    def invoke(self, endpoint_name: str, body: bytes, content_type: str) -> Invocation:
        """:rawPredict: the request and the model's answer pass through as they are."""
        started = time.perf_counter()
        payload, answer_type = self.http.invoke(
            f"{self._endpoint_path(endpoint_name)}:rawPredict", body, content_type
        )
        return Invocation(payload, answer_type, (time.perf_counter() - started) * 1000.0)
