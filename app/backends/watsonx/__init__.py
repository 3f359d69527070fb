"""IBM watsonx.ai: trainings and online deployments over the ``/ml/v4`` REST API."""

from app.backends.watsonx.backend import WatsonxBackend

__all__ = ["WatsonxBackend"]
