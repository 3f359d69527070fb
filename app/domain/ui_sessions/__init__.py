"""Console sign-ins: a browser's session cookie mapped server-side to an API key's id."""
