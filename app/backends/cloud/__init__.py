"""What the REST-only cloud backends (Vertex AI, Azure ML, watsonx.ai) share: an httpx client
that paces, retries and maps errors, and the credential providers that feed it tokens."""
