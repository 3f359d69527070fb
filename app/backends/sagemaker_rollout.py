"""Rolling a SageMaker endpoint to another model: a new model and endpoint configuration
named after the artifact, then UpdateEndpoint, which SageMaker runs blue/green (the new fleet
serves only once it is healthy; the old one is then retired)."""

from __future__ import annotations

import hashlib
from typing import Any

from app.backends import sagemaker_requests as req
from app.backends.base import EndpointSpec, EndpointStatus
from app.backends.sagemaker_serving import SageMakerServing


def generation(artifact_uri: str) -> str:
    """A short, stable suffix for the model and configuration of one artifact."""
    return hashlib.sha256(artifact_uri.encode()).hexdigest()[:8]


class SageMakerRollout(SageMakerServing):
    """``update_endpoint_model`` of the SageMaker backend (a base of ``SageMakerBackend``)."""

    def update_endpoint_model(self, spec: EndpointSpec) -> EndpointStatus:
        """CreateModel and CreateEndpointConfig for the artifact (kept when already there),
        then UpdateEndpoint unless the endpoint already has that configuration."""
        name, suffix = spec.endpoint_name, generation(spec.artifact_uri)
        model, config = (
            f"{req.model_name(name)}-{suffix}",
            f"{req.endpoint_config_name(name)}-{suffix}",
        )
        container: dict[str, Any] = {
            "Image": spec.image or self._serving_image(spec),
            "ModelDataUrl": spec.artifact_uri,
        }
        if spec.environment:
            container["Environment"] = dict(spec.environment)
        tags = req.endpoint_tags(name, spec.tags)
        self._call_unless(
            "exists",
            self.sm.create_model,
            ModelName=model,
            ExecutionRoleArn=self._role(spec.role_arn),
            PrimaryContainer=container,
            Tags=tags,
        )
        variant = {
            "VariantName": req.VARIANT,
            "ModelName": model,
            "InstanceType": spec.instance_type,
            "InitialInstanceCount": spec.instance_count,
            "InitialVariantWeight": 1.0,
        }
        self._call_unless(
            "exists",
            self.sm.create_endpoint_config,
            EndpointConfigName=config,
            ProductionVariants=[variant],
            Tags=tags,
        )
        described = self._describe_endpoint(name)
        if described is not None and described.get("EndpointConfigName") != config:
            self._call(self.sm.update_endpoint, EndpointName=name, EndpointConfigName=config)
            described = self._describe_endpoint(name)
        return req.endpoint_status(name, described)
