"""Azure Machine Learning: command jobs and managed online endpoints over ARM REST."""

from app.backends.azureml.backend import AzureMLBackend

__all__ = ["AzureMLBackend"]
