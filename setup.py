"""Package layout that pyproject.toml cannot express: the client, kept under ``app/client``,
installs as the top-level package ``stratus`` (and only there)."""

from setuptools import find_packages, setup

CLIENT_DIR = "app/client"

setup(
    packages=[
        *find_packages(
            include=["app*", "workers*", "migrations*"], exclude=["app.client", "app.client.*"]
        ),
        "stratus",
        *(f"stratus.{p}" for p in find_packages(CLIENT_DIR)),
    ],
    package_dir={"stratus": CLIENT_DIR},
)
