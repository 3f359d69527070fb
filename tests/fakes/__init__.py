"""Small HTTP servers standing in for clouds that have no emulator (Vertex AI, Azure ML,
watsonx.ai), written from the providers' published REST references."""
