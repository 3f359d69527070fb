"""Google Cloud Vertex AI: custom jobs and endpoints over REST (no Google SDK)."""

from app.backends.vertex.backend import VertexBackend

__all__ = ["VertexBackend"]
