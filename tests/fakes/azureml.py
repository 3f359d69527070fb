"""A fake Azure Machine Learning workspace (ARM ``Microsoft.MachineLearningServices``).

Modelled: command jobs by caller-chosen name (PUT creates with 201; a PUT that changes more than
tags answers 409 Conflict; one that changes only tags updates them), job states NotStarted ->
Queued -> Running -> Completed | Failed, cancel (CancelRequested -> Canceled, 202 with a
Location), list filtered by tag key with nextLink paging, online endpoints and deployments with
provisioningState (Creating -> Succeeded), ``sku.capacity`` PATCH (Updating -> Succeeded),
DELETE with 202, listKeys, scoring with the endpoint key, the ``api-version`` parameter, ARM's
error body, 429 with Retry-After, the Azure AD client-credentials token.
Not modelled: RBAC, compute clusters and their quotas, environments and code assets (ids are
taken as given), archived jobs, traffic rules, autoscale settings, logs and metrics.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from tests.fakes.base import TOKEN, FakeCloud, Reply, Request, iso, model_answer

W = (
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)"
)
ACTIVE = {"NotStarted", "Queued", "Running", "Finalizing", "CancelRequested"}
PAGE = 50  # jobs per list page (Azure picks its own page size)


class FakeAzureML(FakeCloud):
    name = "azureml"

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.deployments: dict[str, dict[str, Any]] = {}  # by endpoint name
        self.models: dict[str, dict[str, Any]] = {}
        self.start_s, self.cancel_s, self.provision_s = 0.0, 0.5, 1.0
        r = self.route
        r("PUT", W + r"/jobs/(?P<name>[\w-]+)", "jobs.create", self._put_job)
        r("GET", W + r"/jobs/(?P<name>[\w-]+)", "jobs.get", self._get_job)
        r("GET", W + r"/jobs", "jobs.list", self._list_jobs)
        r("POST", W + r"/jobs/(?P<name>[\w-]+)/cancel", "jobs.cancel", self._cancel_job)
        r("PUT", W + r"/models/(?P<name>[\w-]+)/versions/(?P<v>\d+)", "models.put", self._put_model)
        r(
            "DELETE",
            W + r"/models/(?P<name>[\w-]+)/versions/(?P<v>\d+)",
            "models.delete",
            self._del_model,
        )
        r("PUT", W + r"/onlineEndpoints/(?P<e>[\w-]+)", "endpoints.create", self._put_endpoint)
        r("GET", W + r"/onlineEndpoints/(?P<e>[\w-]+)", "endpoints.get", self._get_endpoint)
        r("DELETE", W + r"/onlineEndpoints/(?P<e>[\w-]+)", "endpoints.delete", self._del_endpoint)
        r("POST", W + r"/onlineEndpoints/(?P<e>[\w-]+)/listKeys", "endpoints.listKeys", self._keys)
        d = W + r"/onlineEndpoints/(?P<e>[\w-]+)/deployments/(?P<d>[\w-]+)"
        r("PUT", d, "deployments.create", self._put_deployment)
        r("GET", d, "deployments.get", self._get_deployment)
        r("PATCH", d, "deployments.patch", self._patch_deployment)
        r("POST", r"/score/(?P<e>[\w-]+)", "model.score", self._score)

    def error(self, status: int, code: str, message: str) -> Reply:
        names = {404: "ResourceNotFound", 409: "Conflict", 429: "TooManyRequests"}
        body = {"error": {"code": names.get(status, code or "UserError"), "message": message}}
        return Reply(status, body)

    def token_reply(self, request: Request) -> Reply | None:
        if not request.path.endswith("/oauth2/v2.0/token"):
            return None
        form = {k: v[-1] for k, v in parse_qs(request.raw.decode()).items()}
        if form.get("grant_type") != "client_credentials" or not form.get("client_secret"):
            return Reply(400, {"error": "invalid_client"})
        return Reply(200, {"token_type": "Bearer", "expires_in": 3599, "access_token": TOKEN})

    def _dispatch_version(self, request: Request) -> Reply | None:
        if not request.query.get("api-version"):
            return self.error(400, "MissingApiVersionParameter", "api-version is required")
        return None

    def dispatch(self, request: Request) -> tuple[Reply | None, str]:
        if not request.path.startswith("/score/") and self.token_reply(request) is None:
            missing = self._dispatch_version(request)
            if missing is not None:
                return missing, ""
        return super().dispatch(request)

    # ---- jobs
    def _put_job(self, request: Request, name: str, **ids: str) -> Reply:
        props = request.json()["properties"]
        job = self.jobs.get(name)
        if job is not None:
            mine = {k: v for k, v in job["properties"].items() if k not in _SERVER_SET}
            theirs = {k: v for k, v in props.items() if k not in _SERVER_SET}
            if {**mine, "tags": None} != {**theirs, "tags": None}:
                return self.error(409, "", f"Job {name} already exists with different properties")
            job["properties"]["tags"] = props.get("tags", {})
            return Reply(200, job)
        job = {
            "id": f"/subscriptions/{ids['sub']}/resourceGroups/{ids['rg']}/providers/"
            f"Microsoft.MachineLearningServices/workspaces/{ids['ws']}/jobs/{name}",
            "name": name,
            "type": "Microsoft.MachineLearningServices/workspaces/jobs",
            "properties": {**props, "status": "NotStarted"},
            "systemData": {"createdAt": iso(self.now())},
        }
        self.jobs[name] = job
        self.later(0, lambda: self.set_job(name, "Queued"))
        self.later(self.start_s, lambda: self.set_job(name, "Running"))
        return Reply(201, job)

    def set_job(self, name: str, status: str, message: str | None = None) -> None:
        with self.lock:
            props = self.jobs[name]["properties"]
            if props["status"] not in ACTIVE:
                return
            props["status"] = status
            if status == "Running":
                props.setdefault("startTime", iso(self.now()))
            if status not in ACTIVE:
                props["endTime"] = iso(self.now())
            if message:
                props["error"] = {"code": "UserError", "message": message}

    def finish(self, job_name: str, ok: bool = True) -> None:
        self.set_job(job_name, "Completed" if ok else "Failed", None if ok else "exit code 1")

    def count_named(self, job_name: str) -> int:
        return 1 if job_name in self.jobs else 0

    def running_names(self) -> list[str]:
        with self.lock:
            return [n for n, j in self.jobs.items() if j["properties"]["status"] == "Running"]

    def touch(self, job_name: str) -> None:
        with self.lock:
            self.jobs[job_name]["systemData"]["lastModifiedAt"] = iso(self.now())

    def _get_job(self, request: Request, name: str, **_: str) -> Reply:
        job = self.jobs.get(name)
        return Reply(200, job) if job else self.error(404, "", f"Job {name} not found")

    def _list_jobs(self, request: Request, **_: str) -> Reply:
        tag = request.query.get("tag")
        found = [j for j in self.jobs.values() if not tag or tag in j["properties"].get("tags", {})]
        skip = int(request.query.get("$skip") or 0)
        page: dict[str, Any] = {"value": found[skip : skip + PAGE]}
        if skip + PAGE < len(found):
            query = "&".join(f"{k}={v}" for k, v in request.query.items() if k != "$skip")
            page["nextLink"] = f"{self.base_url}{request.path}?{query}&$skip={skip + PAGE}"
        return Reply(200, page)

    def _cancel_job(self, request: Request, name: str, **_: str) -> Reply:
        job = self.jobs.get(name)
        if job is None:
            return self.error(404, "", f"Job {name} not found")
        if job["properties"]["status"] not in ACTIVE - {"CancelRequested"}:
            return self.error(400, "UserError", f"Job {name} is not running")
        self.set_job(name, "CancelRequested")
        self.later(self.cancel_s, lambda: self.set_job(name, "Canceled"))
        return Reply(202, None, {"Location": f"{self.base_url}{request.path}"})

    # ---- models, endpoints, deployments
    def _put_model(self, request: Request, name: str, v: str, **_: str) -> Reply:
        self.models[f"{name}/{v}"] = request.json()
        return Reply(201, {"name": v, **request.json()})

    def _del_model(self, request: Request, name: str, v: str, **_: str) -> Reply:
        gone = self.models.pop(f"{name}/{v}", None)
        return Reply(200 if gone else 204)

    def _provision(self, resource: dict[str, Any], state: str, then: str = "Succeeded") -> None:
        resource["properties"]["provisioningState"] = state
        self.later(
            self.provision_s, lambda: resource["properties"].__setitem__("provisioningState", then)
        )

    def _put_endpoint(self, request: Request, e: str, **_: str) -> Reply:
        current = self.endpoints.get(e)
        if current is not None and current["properties"]["provisioningState"] != "Succeeded":
            return self.error(409, "", f"Endpoint {e} has an operation in progress")
        body = request.json()
        endpoint = {
            "id": f"{request.path}",
            "name": e,
            "location": body.get("location"),
            "tags": body.get("tags", {}),
            "properties": {
                **body.get("properties", {}),
                "scoringUri": f"{self.base_url}/score/{e}",
            },
        }
        self.endpoints[e] = endpoint
        self._provision(endpoint, "Creating" if current is None else "Updating")
        return Reply(201 if current is None else 200, endpoint)

    def _get_endpoint(self, request: Request, e: str, **_: str) -> Reply:
        endpoint = self.endpoints.get(e)
        return Reply(200, endpoint) if endpoint else self.error(404, "", f"Endpoint {e} not found")

    def _del_endpoint(self, request: Request, e: str, **_: str) -> Reply:
        if self.endpoints.pop(e, None) is None:
            return Reply(204)
        self.deployments.pop(e, None)
        return Reply(202, None, {"Location": f"{self.base_url}{request.path}"})

    def _keys(self, request: Request, e: str, **_: str) -> Reply:
        if e not in self.endpoints:
            return self.error(404, "", f"Endpoint {e} not found")
        return Reply(200, {"primaryKey": f"key-{e}", "secondaryKey": f"key2-{e}"})

    def _put_deployment(self, request: Request, e: str, d: str, **_: str) -> Reply:
        endpoint = self.endpoints.get(e)
        if endpoint is None:
            return self.error(404, "", f"Endpoint {e} not found")
        if endpoint["properties"]["provisioningState"] != "Succeeded" or e in self.deployments:
            return self.error(409, "", f"Endpoint {e} is busy or deployment {d} exists")
        deployment = {**request.json(), "id": request.path, "name": d}
        deployment["properties"] = dict(deployment["properties"])
        self.deployments[e] = deployment
        self._provision(deployment, "Creating")
        return Reply(201, deployment)

    def _get_deployment(self, request: Request, e: str, d: str, **_: str) -> Reply:
        deployment = self.deployments.get(e)
        if deployment is None or deployment["name"] != d:
            return self.error(404, "", f"Deployment {d} not found")
        return Reply(200, deployment)

    def _patch_deployment(self, request: Request, e: str, d: str, **_: str) -> Reply:
        deployment = self.deployments.get(e)
        if deployment is None:
            return self.error(404, "", f"Deployment {d} not found")
        if deployment["properties"]["provisioningState"] != "Succeeded":
            return self.error(409, "", f"Deployment {d} has an operation in progress")
        capacity = request.json()["sku"]["capacity"]
        deployment["properties"]["provisioningState"] = "Scaling"
        self.later(self.provision_s, lambda: _scaled(deployment, capacity))
        return Reply(202, None, {"Location": f"{self.base_url}{request.path}"})

    def _score(self, request: Request, e: str) -> Reply:
        if request.headers.get("authorization") != f"Bearer key-{e}":
            return Reply(401, b"invalid key", content_type="text/plain")
        deployment = self.deployments.get(e)
        wanted = request.headers.get("azureml-model-deployment")
        if deployment is None or deployment["name"] != wanted:
            return Reply(404, b"no such deployment", content_type="text/plain")
        return model_answer(request)

    def replicas(self, endpoint_name: str) -> int:
        return int(self.deployments[endpoint_name]["sku"]["capacity"])


_SERVER_SET = frozenset({"status", "startTime", "endTime", "error"})


def _scaled(deployment: dict[str, Any], capacity: int) -> None:
    deployment["sku"]["capacity"] = capacity
    deployment["properties"]["provisioningState"] = "Succeeded"
