"""Azure ML managed online endpoints: an endpoint, a registered model version and one
deployment whose ``sku.capacity`` is the instance count. Requests name the deployment
(``azureml-model-deployment``), so no traffic rule is needed."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from app.backends.azureml import shapes
from app.backends.base import (
    BackendError,
    EndpointSpec,
    EndpointState,
    EndpointStatus,
    Invocation,
)
from app.backends.cloud.common import wait_until
from app.backends.cloud.http import CloudHttp
from app.settings import AzureMLSettings

MISSING = frozenset({404})


class AzureMLServing:
    """Endpoint operations over the client of AzureMLBackend."""

    config: AzureMLSettings
    http: CloudHttp
    workspace: str
    version: dict[str, str]

    def _endpoint_path(self, name: str) -> str:
        return f"{self.workspace}/onlineEndpoints/{name}"

    def _deployment_path(self, name: str) -> str:
        return f"{self._endpoint_path(name)}/deployments/{shapes.DEPLOYMENT}"

    def _get(self, path: str) -> dict[str, Any] | None:
        answer = self.http.call("GET", path, params=self.version, tolerate=MISSING)
        return None if answer is None else answer.body

    def create_endpoint(self, spec: EndpointSpec) -> EndpointStatus:
        """PUT the endpoint and the model version, wait for the endpoint, PUT the deployment."""
        name, region = spec.endpoint_name, self.config.region
        path = self._endpoint_path(name)
        if self._get(path) is None:
            body = {"location": region, "tags": dict(spec.tags), "properties": {"authMode": "Key"}}
            self.http.call("PUT", path, params=self.version, json=body, tolerate=frozenset({409}))
        model = f"{self.workspace}/models/{name}-m/versions/1"
        self.http.call(
            "PUT",
            model,
            params=self.version,
            json=shapes.model_version(spec),
            tolerate=frozenset({409}),
        )

        def ready() -> bool | None:
            state = (self._get(path) or {}).get("properties", {}).get("provisioningState")
            if state in ("Failed", "Canceled"):
                raise BackendError(f"azureml endpoint {name} {state.lower()}", retryable=False)
            return True if state == "Succeeded" else None

        wait_until(ready, self.config.operation_timeout_s, f"azureml endpoint {name}")
        if self._get(self._deployment_path(name)) is None:
            image = spec.image if spec.image and spec.image.startswith("azureml:") else None
            self.http.call(
                "PUT",
                self._deployment_path(name),
                params=self.version,
                json=shapes.deployment(spec, region, model, image or self.config.serving_image),
                tolerate=frozenset({409}),
            )
        return self._status(name)

    def _status(self, name: str) -> EndpointStatus:
        endpoint = self._get(self._endpoint_path(name))
        deployed = self._get(self._deployment_path(name)) if endpoint is not None else None
        return shapes.endpoint_status(name, endpoint, deployed)

    def update_capacity(self, endpoint_name: str, instance_count: int) -> EndpointStatus:
        """PATCH the deployment's ``sku.capacity``, once it is not changing."""
        status = self._status(endpoint_name)
        if status.state == EndpointState.GONE:
            raise BackendError(f"endpoint {endpoint_name} does not exist", retryable=False)
        if status.state == EndpointState.IN_SERVICE and status.current_instances == instance_count:
            return status
        if status.state != EndpointState.IN_SERVICE:
            raise BackendError(
                f"endpoint {endpoint_name} is {status.state}; capacity changes once in service",
                retryable=True,
            )
        self.http.must(
            "PATCH",
            self._deployment_path(endpoint_name),
            params=self.version,
            json={"sku": {"capacity": instance_count}},
        )
        return self._status(endpoint_name)

    def delete_endpoint(self, endpoint_name: str) -> None:
        """DELETE the endpoint (its deployment goes with it) and the model version."""
        self.http.call(
            "DELETE", self._endpoint_path(endpoint_name), params=self.version, tolerate=MISSING
        )
        model = f"{self.workspace}/models/{endpoint_name}-m/versions/1"
        self.http.call("DELETE", model, params=self.version, tolerate=frozenset({404, 409}))

    def describe_endpoints(self, endpoint_names: Sequence[str]) -> Mapping[str, EndpointStatus]:
        """The endpoint and its deployment; a missing endpoint reports GONE."""
        return {name: self._status(name) for name in endpoint_names}

    def invoke(self, endpoint_name: str, body: bytes, content_type: str) -> Invocation:
        """POST to the scoring URI with the endpoint's key; the answer passes through."""
        endpoint = self._get(self._endpoint_path(endpoint_name))
        scoring = (endpoint or {}).get("properties", {}).get("scoringUri")
        if not scoring:
            raise BackendError(f"endpoint {endpoint_name} has no scoring URI yet", retryable=True)
        keys = self.http.must(
            "POST", f"{self._endpoint_path(endpoint_name)}/listKeys", params=self.version
        )
        headers = {
            "Authorization": f"Bearer {keys['primaryKey']}",
            "azureml-model-deployment": shapes.DEPLOYMENT,
        }
        started = time.perf_counter()
        payload, answer_type = self.http.invoke(str(scoring), body, content_type, headers)
        return Invocation(payload, answer_type, (time.perf_counter() - started) * 1000.0)
