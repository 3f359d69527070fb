"""A fake watsonx.ai (Watson Machine Learning ``/ml/v4``) in one deployment space.

Modelled: trainings (ids chosen by the service) queued -> pending -> running -> storing ->
completed | failed, cancel by DELETE (-> canceled; a finished one is left), list filtered by
``tag.value`` and ``state`` with ``limit`` and ``next.href`` start tokens, models, online
deployments (initializing -> ready) whose ``online.parameters.serving_name`` is unique (409),
JSON-patch of ``/hardware_request`` (updating -> ready), predictions by serving name, the
``version`` and ``space_id`` parameters, IBM's error body (``errors[]``, ``trace``), 429 with
Retry-After, the IAM API-key exchange.
Not modelled: projects (spaces only), software/hardware specification catalogues, model
content upload, batch deployments, foundation-model inference, usage limits, logs.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qs

from tests.fakes.base import TOKEN, FakeCloud, Reply, Request, iso, model_answer

ACTIVE = {"queued", "pending", "running", "storing"}


class FakeWatsonx(FakeCloud):
    name = "watsonx"

    def __init__(self, space_id: str = "space-1") -> None:
        super().__init__()
        self.space_id = space_id
        self.trainings: dict[str, dict[str, Any]] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.deployments: dict[str, dict[str, Any]] = {}
        self.start_s, self.cancel_s, self.provision_s = 0.0, 0.5, 1.0
        r = self.route
        r("POST", r"/ml/v4/trainings", "trainings.create", self._create_training)
        r("GET", r"/ml/v4/trainings", "trainings.list", self._list(self.trainings))
        r("GET", r"/ml/v4/trainings/(?P<id>[\w-]+)", "trainings.get", self._get(self.trainings))
        r("DELETE", r"/ml/v4/trainings/(?P<id>[\w-]+)", "trainings.cancel", self._cancel)
        r("POST", r"/ml/v4/models", "models.create", self._create_model)
        r("GET", r"/ml/v4/models", "models.list", self._list(self.models))
        r("DELETE", r"/ml/v4/models/(?P<id>[\w-]+)", "models.delete", self._delete(self.models))
        r("POST", r"/ml/v4/deployments", "deployments.create", self._create_deployment)
        r("GET", r"/ml/v4/deployments", "deployments.list", self._list(self.deployments))
        r("PATCH", r"/ml/v4/deployments/(?P<id>[\w-]+)", "deployments.patch", self._patch)
        r(
            "DELETE",
            r"/ml/v4/deployments/(?P<id>[\w-]+)",
            "deployments.delete",
            self._delete(self.deployments),
        )
        r(
            "POST",
            r"/ml/v4/deployment_serving_name/(?P<sn>\w+)/predictions",
            "model.predictions",
            self._predict,
        )

    def error(self, status: int, code: str, message: str) -> Reply:
        codes = {404: "not_found", 409: "conflict", 429: "too_many_requests", 401: "unauthorized"}
        body = {
            "trace": uuid.uuid4().hex,
            "errors": [{"code": codes.get(status, code or "invalid_request"), "message": message}],
            "status_code": status,
        }
        return Reply(status, body)

    def token_reply(self, request: Request) -> Reply | None:
        if request.path != "/identity/token":
            return None
        form = {k: v[-1] for k, v in parse_qs(request.raw.decode()).items()}
        if form.get("grant_type") != "urn:ibm:params:oauth:grant-type:apikey" or not form.get(
            "apikey"
        ):
            return Reply(
                400,
                {"errorCode": "BXNIM0415E", "errorMessage": "Provided API key could not be found"},
            )
        return Reply(200, {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600})

    def dispatch(self, request: Request) -> tuple[Reply | None, str]:
        if request.path.startswith("/ml/") and not request.query.get("version"):
            return self.error(400, "missing_query_parameter", "version is required"), ""
        return super().dispatch(request)

    def _space(self, request: Request) -> str | None:
        space = request.query.get("space_id")
        if request.method == "POST" and request.raw:
            space = request.json().get("space_id", space)
        return space

    def _new(
        self, store: dict[str, dict[str, Any]], body: dict[str, Any], entity: dict[str, Any]
    ) -> dict[str, Any]:
        resource_id = str(uuid.uuid4())
        meta = {"id": resource_id, "name": body.get("name"), "space_id": body.get("space_id")}
        meta |= {"created_at": iso(self.now()), "tags": body.get("tags", [])}
        resource = {"metadata": meta, "entity": {**body, **entity}}
        store[resource_id] = resource
        return resource

    # ---- trainings
    def _create_training(self, request: Request) -> Reply:
        if self._space(request) != self.space_id:
            return self.error(400, "invalid_space", "space_id is missing or unknown")
        body = request.json()
        job = self._new(self.trainings, body, {"status": {"state": "queued"}})
        job_id = job["metadata"]["id"]
        self.later(0, lambda: self.set_job(job_id, "pending"))
        self.later(self.start_s, lambda: self.set_job(job_id, "running"))
        return Reply(201, job)

    def set_job(self, job_id: str, state: str, message: str | None = None) -> None:
        with self.lock:
            status = self.trainings[job_id]["entity"]["status"]
            if status["state"] not in ACTIVE:
                return
            status["state"] = state
            if state == "running":
                status.setdefault("running_at", iso(self.now()))
            if state not in ACTIVE:
                status["completed_at"] = iso(self.now())
            if message:
                status["failure"] = {"errors": [{"code": "training_failed", "message": message}]}

    def _named(self, job_name: str) -> list[str]:
        return [i for i, j in self.trainings.items() if j["metadata"]["name"] == job_name]

    def finish(self, job_name: str, ok: bool = True) -> None:
        for job_id in self._named(job_name):
            self.set_job(job_id, "completed" if ok else "failed", None if ok else "exit code 1")

    def count_named(self, job_name: str) -> int:
        return len(self._named(job_name))

    def running_names(self) -> list[str]:
        with self.lock:
            jobs = list(self.trainings.values())
        return [j["metadata"]["name"] for j in jobs if j["entity"]["status"]["state"] == "running"]

    def touch(self, job_name: str) -> None:
        with self.lock:
            for job_id in self._named(job_name):
                self.trainings[job_id]["metadata"]["modified_at"] = iso(self.now())

    def _list(self, store: dict[str, dict[str, Any]]) -> Any:
        def handler(request: Request) -> Reply:
            q = request.query
            found = [
                r
                for r in store.values()
                if r["metadata"]["space_id"] == q.get("space_id")
                and (not q.get("tag.value") or q["tag.value"] in r["metadata"]["tags"])
                and (not q.get("state") or r["entity"].get("status", {}).get("state") == q["state"])
                and (
                    not q.get("serving_name")
                    or r["entity"].get("online", {}).get("parameters", {}).get("serving_name")
                    == q["serving_name"]
                )
            ]
            start, limit = int(q.get("start") or 0), min(int(q.get("limit") or 100), 200)
            page: dict[str, Any] = {"resources": found[start : start + limit], "limit": limit}
            page["first"] = {"href": f"{self.base_url}{request.path}?limit={limit}"}
            if start + limit < len(found):
                page["next"] = {"href": f"{self.base_url}{request.path}?start={start + limit}"}
            return Reply(200, page)

        return handler

    def _get(self, store: dict[str, dict[str, Any]]) -> Any:
        def handler(request: Request, id: str) -> Reply:  # noqa: A002
            found = store.get(id)
            return Reply(200, found) if found else self.error(404, "", f"{id} does not exist")

        return handler

    def _cancel(self, request: Request, id: str) -> Reply:  # noqa: A002
        job = self.trainings.get(id)
        if job is None:
            return self.error(404, "", f"training {id} does not exist")
        if job["entity"]["status"]["state"] in ACTIVE:
            self.later(self.cancel_s, lambda: self.set_job(id, "canceled"))
        return Reply(204)

    # ---- models and deployments
    def _create_model(self, request: Request) -> Reply:
        if self._space(request) != self.space_id:
            return self.error(400, "invalid_space", "space_id is missing or unknown")
        return Reply(201, self._new(self.models, request.json(), {}))

    def _delete(self, store: dict[str, dict[str, Any]]) -> Any:
        def handler(request: Request, id: str) -> Reply:  # noqa: A002
            if store.pop(id, None) is None:
                return self.error(404, "", f"{id} does not exist")
            return Reply(204)

        return handler

    def _create_deployment(self, request: Request) -> Reply:
        body = request.json()
        serving = body.get("online", {}).get("parameters", {}).get("serving_name")
        if body.get("asset", {}).get("id") not in self.models:
            return self.error(400, "invalid_asset", "the model asset does not exist")
        if any(
            d["entity"]["online"]["parameters"].get("serving_name") == serving
            for d in self.deployments.values()
        ):
            return self.error(409, "", f"serving_name {serving} is already in use")
        deployment = self._new(self.deployments, body, {"status": {"state": "initializing"}})
        status = deployment["entity"]["status"]
        self.later(self.provision_s, lambda: status.__setitem__("state", "ready"))
        return Reply(202, deployment)

    def _patch(self, request: Request, id: str) -> Reply:  # noqa: A002
        deployment = self.deployments.get(id)
        if deployment is None:
            return self.error(404, "", f"deployment {id} does not exist")
        if request.headers.get("content-type") != "application/json-patch+json":
            return self.error(415, "unsupported_media_type", "send a JSON patch")
        entity = deployment["entity"]
        if entity["status"]["state"] != "ready":
            return self.error(409, "", f"deployment {id} is {entity['status']['state']}")
        for op in request.json():
            if op["op"] != "replace" or op["path"] != "/hardware_request":
                return self.error(400, "invalid_patch", f"cannot patch {op['path']}")
            entity["status"]["state"] = "updating"
            value = op["value"]
            self.later(self.provision_s, lambda v=value: _scaled(entity, v))
        return Reply(202, deployment)

    def _predict(self, request: Request, sn: str) -> Reply:
        ready = [
            d
            for d in self.deployments.values()
            if d["entity"]["online"]["parameters"].get("serving_name") == sn
            and d["entity"]["status"]["state"] in ("ready", "updating")
        ]
        if not ready:
            return self.error(404, "", f"no ready deployment serves {sn}")
        return model_answer(request)

    def replicas(self, endpoint_name: str) -> int:
        sn = "st_" + endpoint_name.rsplit("-", 1)[-1][:33]
        found = [
            d
            for d in self.deployments.values()
            if d["entity"]["online"]["parameters"]["serving_name"] == sn
        ]
        return int(found[0]["entity"]["hardware_request"]["num_nodes"])


def _scaled(entity: dict[str, Any], request: dict[str, Any]) -> None:
    entity["hardware_request"] = request
    entity["status"]["state"] = "ready"
