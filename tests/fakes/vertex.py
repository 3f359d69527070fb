"""A fake Vertex AI (aiplatform v1): custom jobs, models, endpoints, long-running operations.

Modelled: job states QUEUED -> PENDING -> RUNNING -> SUCCEEDED | FAILED, cancel (CANCELLING ->
CANCELLED; 400 FAILED_PRECONDITION on a finished job), list filters on labels, state and
create_time with AND/OR (the subset Stratus sends), page tokens, endpoint and model ids chosen
by the caller (409 ALREADY_EXISTS), operations that finish after a delay, deploy/mutate/undeploy,
rawPredict, Google's error body, 429 RESOURCE_EXHAUSTED with Retry-After.
Not modelled: IAM permissions, quotas, regions other than the one asked, traffic splits across
several deployed models, autoscaling, logging and monitoring, model content.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import parse_qs

from tests.fakes.base import TOKEN, FakeCloud, Reply, Request, iso, model_answer

P = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
ACTIVE = {"JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_CANCELLING"}
STATUS_CODES = {400: "FAILED_PRECONDITION", 404: "NOT_FOUND", 409: "ALREADY_EXISTS"}
STATUS_CODES |= {429: "RESOURCE_EXHAUSTED", 401: "UNAUTHENTICATED"}
JOB_LABEL = "stratus-job"
_NAMED = re.compile(r'^labels\.stratus-job="([^"]*)"$')
_CLAUSE = re.compile(r'^(labels\.[\w-]+|state|create_time)\s*(=|>=)\s*"([^"]*)"$')


def _parse(filter_: str) -> list[list[tuple[str, str, str]]]:
    """Clauses joined by AND; a clause is ``field="v"`` or ``(a="x" OR a="y")``."""
    clauses = []
    for clause in (c.strip() for c in filter_.split(" AND ") if c.strip()):
        options = []
        for option in (o.strip() for o in clause.strip("()").split(" OR ")):
            match = _CLAUSE.match(option)
            if match is None:
                raise ValueError(f"unsupported filter clause {option!r}")
            name, op, value = match.groups()
            options.append((name, op, value))
        clauses.append(options)
    return clauses


def _matches(job: dict[str, Any], clauses: list[list[tuple[str, str, str]]]) -> bool:
    return all(any(_one(job, *option) for option in options) for options in clauses)


def _one(job: dict[str, Any], name: str, op: str, value: str) -> bool:
    if name.startswith("labels."):
        return bool(job["labels"].get(name.removeprefix("labels.")) == value)
    if name == "state":
        return bool(job["state"] == value)
    return bool(job["createTime"] >= value) if op == ">=" else bool(job["createTime"] == value)


class FakeVertex(FakeCloud):
    name = "vertex"

    def __init__(self, project: str = "demo", location: str = "us-central1") -> None:
        super().__init__()
        self.parent = f"projects/{project}/locations/{location}"
        self.jobs: dict[str, dict[str, Any]] = {}  # by numeric id
        self.models: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.start_s = 0.0  # queued -> running
        self.cancel_s = 0.5  # cancelling -> cancelled
        self.operation_s = 0.0  # endpoint/model creation
        self.deploy_s = 1.0  # deploy and mutate
        self._ids = 1000
        self._by_label: dict[str, list[str]] = {}  # the job-name label's index
        r = self.route
        r("POST", P + r"/customJobs", "customJobs.create", self._create_job)
        r("GET", P + r"/customJobs", "customJobs.list", self._list_jobs)
        r("GET", P + r"/customJobs/(?P<id>\d+)", "customJobs.get", self._get_job)
        r("POST", P + r"/customJobs/(?P<id>\d+):cancel", "customJobs.cancel", self._cancel_job)
        r("POST", P + r"/models:upload", "models.upload", self._upload)
        r("GET", P + r"/models/(?P<id>[\w-]+)", "models.get", self._get_model)
        r("DELETE", P + r"/models/(?P<id>[\w-]+)", "models.delete", self._delete_model)
        r("POST", P + r"/endpoints", "endpoints.create", self._create_endpoint)
        r("GET", P + r"/endpoints/(?P<id>[\w-]+)", "endpoints.get", self._get_endpoint)
        r("DELETE", P + r"/endpoints/(?P<id>[\w-]+)", "endpoints.delete", self._delete_endpoint)
        r("GET", P + r"/endpoints/(?P<id>[\w-]+)/operations", "operations.list", self._ops)
        r("GET", r"/v1/(?P<op>.+/operations/\d+)", "operations.get", self._get_op)
        r(
            "POST",
            P + r"/endpoints/(?P<id>[\w-]+):deployModel",
            "endpoints.deployModel",
            self._deploy,
        )
        r(
            "POST",
            P + r"/endpoints/(?P<id>[\w-]+):mutateDeployedModel",
            "endpoints.mutate",
            self._mutate,
        )
        r(
            "POST",
            P + r"/endpoints/(?P<id>[\w-]+):undeployModel",
            "endpoints.undeploy",
            self._undeploy,
        )
        r("POST", P + r"/endpoints/(?P<id>[\w-]+):rawPredict", "model.rawPredict", self._predict)

    def error(self, status: int, code: str, message: str) -> Reply:
        status_name = STATUS_CODES.get(status, code)
        return Reply(status, {"error": {"code": status, "message": message, "status": status_name}})

    def token_reply(self, request: Request) -> Reply | None:
        if request.path != "/token":
            return None
        form = {k: v[-1] for k, v in parse_qs(request.raw.decode()).items()}
        claims = json.loads(base64.urlsafe_b64decode(form["assertion"].split(".")[1] + "=="))
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or (
            "iss" not in claims
        ):
            return Reply(400, {"error": "invalid_grant"})
        return Reply(200, {"access_token": TOKEN, "expires_in": 3599, "token_type": "Bearer"})

    def _next_id(self) -> str:
        self._ids += 1
        return str(self._ids)

    # ---- custom jobs
    def _create_job(self, request: Request, **_: str) -> Reply:
        body = request.json()
        job_id = self._next_id()
        job = {
            **body,
            "name": f"{self.parent}/customJobs/{job_id}",
            "state": "JOB_STATE_QUEUED",
            "createTime": iso(self.now()),
            "updateTime": iso(self.now()),
            "labels": body.get("labels", {}),
        }
        self.jobs[job_id] = job
        self._by_label.setdefault(job["labels"].get(JOB_LABEL, ""), []).append(job_id)
        self.later(self.start_s, lambda: self.set_job(job_id, "JOB_STATE_RUNNING"))
        return Reply(200, job)

    def set_job(self, job_id: str, state: str, message: str | None = None) -> None:
        """Move a job (the test's hook, and the fake's own schedule)."""
        with self.lock:
            job = self.jobs[job_id]
            if job["state"] not in ACTIVE:
                return
            job["state"], job["updateTime"] = state, iso(self.now())
            if state == "JOB_STATE_RUNNING":
                job.setdefault("startTime", iso(self.now()))
            if state not in ACTIVE:
                job["endTime"] = iso(self.now())
            if message:
                job["error"] = {"code": 3, "message": message}

    def job_named(self, job_name: str) -> str:
        return self._by_label[job_name][0]

    def finish(self, job_name: str, ok: bool = True) -> None:
        state = "JOB_STATE_SUCCEEDED" if ok else "JOB_STATE_FAILED"
        self.set_job(self.job_named(job_name), state, None if ok else "exit code 1")

    def count_named(self, job_name: str) -> int:
        return sum(1 for j in self.jobs.values() if j["displayName"] == job_name)

    def running_names(self) -> list[str]:
        with self.lock:
            jobs = list(self.jobs.values())
        return [j["displayName"] for j in jobs if j["state"] == "JOB_STATE_RUNNING"]

    def touch(self, job_name: str) -> None:
        with self.lock:
            self.jobs[self.job_named(job_name)]["updateTime"] = iso(self.now())

    def _list_jobs(self, request: Request, **_: str) -> Reply:
        filter_ = request.query.get("filter", "")
        named = _NAMED.match(filter_)
        try:
            if named:  # what an index on the label would answer
                found = [self.jobs[i] for i in self._by_label.get(named.group(1), [])]
            else:
                clauses = _parse(filter_)
                found = [j for j in self.jobs.values() if _matches(j, clauses)]
        except ValueError as exc:
            return self.error(400, "INVALID_ARGUMENT", str(exc))
        start = int(request.query.get("pageToken") or 0)
        size = int(request.query.get("pageSize") or 100)
        page: dict[str, Any] = {"customJobs": found[start : start + size]}
        if start + size < len(found):
            page["nextPageToken"] = str(start + size)
        return Reply(200, page)

    def _get_job(self, request: Request, id: str, **_: str) -> Reply:  # noqa: A002
        job = self.jobs.get(id)
        return Reply(200, job) if job else self.error(404, "", f"CustomJob {id} not found")

    def _cancel_job(self, request: Request, id: str, **_: str) -> Reply:  # noqa: A002
        job = self.jobs.get(id)
        if job is None:
            return self.error(404, "", f"CustomJob {id} not found")
        if job["state"] not in ACTIVE - {"JOB_STATE_CANCELLING"}:
            return self.error(400, "", f"Cannot cancel a job in state {job['state']}")
        self.set_job(id, "JOB_STATE_CANCELLING")
        self.later(self.cancel_s, lambda: self.set_job(id, "JOB_STATE_CANCELLED"))
        return Reply(200, {})

    # ---- operations
    def _operation(self, under: str, kind: str, delay: float, done: Any) -> dict[str, Any]:
        op_id = self._next_id()
        op: dict[str, Any] = {
            "name": f"{under}/operations/{op_id}",
            "metadata": {"@type": f"type.googleapis.com/google.cloud.aiplatform.v1.{kind}"},
            "done": False,
        }
        self.operations[op["name"]] = op

        def finish() -> None:
            op["done"] = True
            op["response"] = done() or {}

        self.later(delay, finish)
        return op

    def _get_op(self, request: Request, op: str) -> Reply:
        found = self.operations.get(op)
        return Reply(200, found) if found else self.error(404, "", f"operation {op} not found")

    def _ops(self, request: Request, id: str, **_: str) -> Reply:  # noqa: A002
        prefix = f"{self.parent}/endpoints/{id}/operations/"
        ops = [o for name, o in self.operations.items() if name.startswith(prefix)]
        return Reply(200, {"operations": ops})

    # ---- models and endpoints
    def _upload(self, request: Request, **_: str) -> Reply:
        body = request.json()
        model_id = body.get("modelId") or self._next_id()
        if model_id in self.models:
            return self.error(409, "", f"Model {model_id} already exists")
        name = f"{self.parent}/models/{model_id}"
        op = self._operation(
            name,
            "UploadModelOperationMetadata",
            self.operation_s,
            lambda: self.models.__setitem__(model_id, {**body["model"], "name": name}),
        )
        self.models[model_id] = {}  # reserved: a second upload of the id is refused at once
        return Reply(200, op)

    def _get_model(self, request: Request, id: str, **_: str) -> Reply:  # noqa: A002
        model = self.models.get(id)
        return Reply(200, model) if model else self.error(404, "", f"Model {id} not found")

    def _delete_model(self, request: Request, id: str, **_: str) -> Reply:  # noqa: A002
        if self.models.pop(id, None) is None:
            return self.error(404, "", f"Model {id} not found")
        return Reply(
            200, self._operation(f"{self.parent}/models/{id}", "DeleteOperationMetadata", 0, dict)
        )

    def _create_endpoint(self, request: Request, **_: str) -> Reply:
        endpoint_id = request.query.get("endpointId") or self._next_id()
        if endpoint_id in self.endpoints:
            return self.error(409, "", f"Endpoint {endpoint_id} already exists")
        name = f"{self.parent}/endpoints/{endpoint_id}"
        body = {**request.json(), "name": name, "deployedModels": []}
        self.endpoints[endpoint_id] = {"pending": True, **body}
        op = self._operation(
            name,
            "CreateEndpointOperationMetadata",
            self.operation_s,
            lambda: self.endpoints[endpoint_id].pop("pending", None),
        )
        return Reply(200, op)

    def _endpoint(self, endpoint_id: str) -> dict[str, Any] | None:
        endpoint = self.endpoints.get(endpoint_id)
        return None if endpoint is None or endpoint.get("pending") else endpoint

    def _get_endpoint(self, request: Request, id: str, **_: str) -> Reply:  # noqa: A002
        endpoint = self._endpoint(id)
        return Reply(200, endpoint) if endpoint else self.error(404, "", f"Endpoint {id} not found")

    def _delete_endpoint(self, request: Request, id: str, **_: str) -> Reply:  # noqa: A002
        endpoint = self._endpoint(id)
        if endpoint is None:
            return self.error(404, "", f"Endpoint {id} not found")
        if endpoint["deployedModels"]:
            return self.error(400, "", "The Endpoint still has deployed models")
        del self.endpoints[id]
        return Reply(200, self._operation(endpoint["name"], "DeleteOperationMetadata", 0, dict))

    def _deploy(self, request: Request, id: str, **_: str) -> Reply:  # noqa: A002
        endpoint = self._endpoint(id)
        if endpoint is None:
            return self.error(404, "", f"Endpoint {id} not found")
        wanted = request.json()["deployedModel"]
        if wanted["model"].rsplit("/", 1)[-1] not in self.models:
            return self.error(404, "", f"Model {wanted['model']} not found")
        deployed = {**wanted, "id": self._next_id()}
        op = self._operation(
            endpoint["name"],
            "DeployModelOperationMetadata",
            self.deploy_s,
            lambda: endpoint["deployedModels"].append(deployed),
        )
        return Reply(200, op)

    def _mutate(self, request: Request, id: str, **_: str) -> Reply:  # noqa: A002
        endpoint = self._endpoint(id)
        wanted = request.json()["deployedModel"]
        found = [d for d in (endpoint or {}).get("deployedModels", []) if d["id"] == wanted["id"]]
        if not found:
            return self.error(404, "", f"DeployedModel {wanted['id']} not found")
        resources = found[0]["dedicatedResources"]
        op = self._operation(
            endpoint["name"] if endpoint else "",
            "MutateDeployedModelOperationMetadata",
            self.deploy_s,
            lambda: resources.update(wanted["dedicatedResources"]),
        )
        return Reply(200, op)

    def _undeploy(self, request: Request, id: str, **_: str) -> Reply:  # noqa: A002
        endpoint = self._endpoint(id)
        if endpoint is None:
            return self.error(404, "", f"Endpoint {id} not found")
        gone = request.json()["deployedModelId"]
        endpoint["deployedModels"] = [d for d in endpoint["deployedModels"] if d["id"] != gone]
        return Reply(
            200, self._operation(endpoint["name"], "UndeployModelOperationMetadata", 0, dict)
        )

    def _predict(self, request: Request, id: str, **_: str) -> Reply:  # noqa: A002
        endpoint = self._endpoint(id)
        if endpoint is None or not endpoint["deployedModels"]:
            return self.error(400, "", "The Endpoint does not have a deployed model")
        return model_answer(request)

    def replicas(self, endpoint_id: str) -> int:
        endpoint = self.endpoints[endpoint_id]
        return int(endpoint["deployedModels"][0]["dedicatedResources"]["minReplicaCount"])
