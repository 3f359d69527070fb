"""watsonx.ai online deployments: a model asset and one deployment whose
``hardware_request.num_nodes`` is the instance count; predictions pass through.

The deployment's serving name is derived from the Stratus name and unique in the region (409
on reuse), which is how a retried create finds the deployment it made.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from app.backends.base import (
    BackendError,
    EndpointSpec,
    EndpointState,
    EndpointStatus,
    Invocation,
)
from app.backends.cloud.http import CloudHttp
from app.backends.watsonx import shapes
from app.settings import WatsonxSettings

MISSING = frozenset({404})
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


class WatsonxServing:
    """Endpoint operations over the client of WatsonxBackend."""

    config: WatsonxSettings
    http: CloudHttp
    space_id: str
    scope: dict[str, str]

    if TYPE_CHECKING:

        def _list(self, path: str, **filters: str) -> list[Mapping[str, Any]]: ...

    def _deployment(self, endpoint_name: str) -> Mapping[str, Any] | None:
        found = self._list("/ml/v4/deployments", serving_name=shapes.serving_name(endpoint_name))
        return found[0] if found else None

    def _model_id(self, spec: EndpointSpec) -> str:
        tag = f"{spec.endpoint_name}-m"
        models = self._list("/ml/v4/models", **{"tag.value": tag})
        if models:
            return str(models[0]["metadata"]["id"])
        body = shapes.model(spec, self.space_id, self.config.model_type, self.config.software_spec)
        created = self.http.must("POST", "/ml/v4/models", params=self.scope, json=body)
        return str(created["metadata"]["id"])

    def create_endpoint(self, spec: EndpointSpec) -> EndpointStatus:
        """Store the model asset, then POST the deployment; 409 (serving name taken) is done."""
        name = spec.endpoint_name
        if self._deployment(name) is None:
            body = shapes.deployment(spec, self.space_id, self._model_id(spec))
            self.http.call(
                "POST",
                "/ml/v4/deployments",
                params=self.scope,
                json=body,
                tolerate=frozenset({409}),
            )
        return shapes.endpoint_status(name, self._deployment(name))

    def update_capacity(self, endpoint_name: str, instance_count: int) -> EndpointStatus:
        """PATCH ``/hardware_request`` to ``instance_count`` nodes, once the deployment is ready."""
        deployed = self._deployment(endpoint_name)
        status = shapes.endpoint_status(endpoint_name, deployed)
        if deployed is None:
            raise BackendError(f"endpoint {endpoint_name} does not exist", retryable=False)
        if status.state == EndpointState.IN_SERVICE and status.current_instances == instance_count:
            return status
        if status.state != EndpointState.IN_SERVICE:
            raise BackendError(
                f"endpoint {endpoint_name} is {status.state}; capacity changes once in service",
                retryable=True,
            )
        request = dict(deployed["entity"].get("hardware_request", {}), num_nodes=instance_count)
        self.http.must(
            "PATCH",
            f"/ml/v4/deployments/{status.external_id}",
            params=self.scope,
            json=[{"op": "replace", "path": "/hardware_request", "value": request}],
            headers=JSON_PATCH,
        )
        return shapes.endpoint_status(endpoint_name, self._deployment(endpoint_name))

    def delete_endpoint(self, endpoint_name: str) -> None:
        """DELETE the deployment and its model asset; missing ones are fine."""
        deployed = self._deployment(endpoint_name)
        if deployed is not None:
            path = f"/ml/v4/deployments/{deployed['metadata']['id']}"
            self.http.call("DELETE", path, params=self.scope, tolerate=MISSING)
        for model in self._list("/ml/v4/models", **{"tag.value": f"{endpoint_name}-m"}):
            path = f"/ml/v4/models/{model['metadata']['id']}"
            self.http.call("DELETE", path, params=self.scope, tolerate=MISSING)

    def describe_endpoints(self, endpoint_names: Sequence[str]) -> Mapping[str, EndpointStatus]:
        """Each deployment found by its serving name; a missing one reports GONE."""
        return {
            name: shapes.endpoint_status(name, self._deployment(name)) for name in endpoint_names
        }

    def invoke(self, endpoint_name: str, body: bytes, content_type: str) -> Invocation:
        """POST …/predictions; the request and the model's answer pass through as they are."""
        url = f"/ml/v4/deployment_serving_name/{shapes.serving_name(endpoint_name)}/predictions"
        started = time.perf_counter()
        payload, answer_type = self.http.invoke(
            f"{url}?version={self.config.version}", body, content_type
        )
        return Invocation(payload, answer_type, (time.perf_counter() - started) * 1000.0)
