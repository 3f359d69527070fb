"""The inference contract of SageMaker's inference toolkit: ``model_fn``, ``input_fn``,
``predict_fn``, ``output_fn`` (or one ``transform_fn``), each optional, with defaults.

The script is ``code/inference.py`` inside the model directory (SageMaker's convention for
framework containers) or ``inference.py`` at its root. Without one, the defaults serve a
``model.joblib``/``model.pkl`` with JSON in and out. An error in ``input_fn`` answers 400, any
other 500, unless the exception carries an HTTP ``status_code`` attribute of its own.
"""

from __future__ import annotations

import csv
import importlib.util
import inspect
import io
import json
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
SCRIPTS = ("code/inference.py", "inference.py")


class InferenceError(Exception):
    """A request the model cannot answer, with the HTTP status to answer it with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _media(content_type: str | None) -> str:
    return (content_type or JSON).split(";")[0].strip().lower()


def default_model_fn(model_dir: str) -> Any:
    """Load ``model.joblib`` or ``model.pkl`` (as the scikit-learn container does)."""
    root = Path(model_dir)
    if (root / "model.joblib").exists():
        # Imported here: only models saved with joblib need it installed.
        return importlib.import_module("joblib").load(root / "model.joblib")
    for name in ("model.pkl", "model.pickle"):
        if (root / name).exists():
            with (root / name).open("rb") as handle:
                # The artifact is the deployment owner's own model, as on SageMaker.
                return pickle.load(handle)  # noqa: S301
    raise FileNotFoundError(
        f"no model_fn in {' or '.join(SCRIPTS)} and no model.joblib or model.pkl in the model"
    )


def default_input_fn(body: bytes, content_type: str) -> Any:
    """JSON (a TF Serving ``{"instances": ...}`` body is unwrapped), CSV rows, or .npy."""
    media = _media(content_type)
    if media == JSON or media.endswith("+json"):
        data = json.loads(body or b"null")
        if isinstance(data, dict) and set(data) == {"instances"}:
            return data["instances"]
        return data
    if media == CSV:
        rows = csv.reader(io.StringIO(body.decode()))
        return [[float(cell) for cell in row] for row in rows if row]
    if media == NPY:
        return importlib.import_module("numpy").load(io.BytesIO(body), allow_pickle=False)
    raise InferenceError(415, f"unsupported content type {content_type!r}; send {JSON} or {CSV}")


def default_predict_fn(data: Any, model: Any) -> Any:
    """``model.predict(data)``."""
    if not hasattr(model, "predict"):
        raise InferenceError(500, "the model has no predict(); define predict_fn")
    return model.predict(data)


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def default_output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    """JSON (numpy values become lists), or CSV for a list of rows."""
    media = _media(accept)
    if media in (JSON, "*/*") or media.endswith("+json"):
        return json.dumps(prediction, default=_plain).encode(), JSON
    if media == CSV:
        rows = _plain(prediction) if hasattr(prediction, "tolist") else prediction
        out = io.StringIO()
        writer = csv.writer(out)
        for row in rows:
            writer.writerow(row if isinstance(row, list | tuple) else [row])
        return out.getvalue().encode(), CSV
    raise InferenceError(406, f"cannot answer in {accept!r}; accept {JSON} or {CSV}")


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a user hook, adding SageMaker's optional trailing ``context`` (None) if it takes one."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return fn(*args)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) > len(args):
        return fn(*args, None)
    return fn(*args)


class InferenceHandler:
    """One loaded model and the hooks that serve it."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.script = next((model_dir / s for s in SCRIPTS if (model_dir / s).is_file()), None)
        module = self._import(self.script) if self.script else None
        self.model_fn = getattr(module, "model_fn", default_model_fn)
        self.input_fn = getattr(module, "input_fn", default_input_fn)
        self.predict_fn = getattr(module, "predict_fn", default_predict_fn)
        self.output_fn = getattr(module, "output_fn", default_output_fn)
        self.transform_fn: Callable[..., Any] | None = getattr(module, "transform_fn", None)
        self.model: Any = None

    @staticmethod
    def _import(script: Path) -> ModuleType:
        # The script's directory goes first on sys.path, so it can import its siblings.
        sys.path.insert(0, str(script.parent))
        spec = importlib.util.spec_from_file_location("inference", script)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {script}")
        module = importlib.util.module_from_spec(spec)
        sys.modules["inference"] = module
        spec.loader.exec_module(module)
        return module

    def load(self) -> None:
        """Run ``model_fn`` once, before the replica reports ready."""
        self.model = _call(self.model_fn, str(self.model_dir))

    def handle(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        """Answer one request: (body, content type); raises InferenceError for 4xx/5xx."""
        if self.transform_fn is not None:
            result = _call(self.transform_fn, self.model, body, content_type, accept)
            return _as_response(result, accept)
        try:
            data = _call(self.input_fn, body, content_type)
        except InferenceError:
            raise
        except Exception as exc:  # the request could not be read: the caller's problem
            status = status_of(exc, default=400)
            raise InferenceError(status, f"bad request: {type(exc).__name__}: {exc}") from exc
        prediction = _call(self.predict_fn, data, self.model)
        return _as_response(_call(self.output_fn, prediction, accept), accept)


def status_of(exc: BaseException, default: int) -> int:
    """The HTTP status an exception asks for (a ``status_code`` of 400-599), else ``default``."""
    status = getattr(exc, "status_code", default)
    return status if isinstance(status, int) and 400 <= status < 600 else default


def _as_response(result: Any, accept: str) -> tuple[bytes, str]:
    """Hooks may return a body, or (body, content type) as the toolkit's encoders do."""
    body, content_type = result if isinstance(result, tuple) else (result, _media(accept))
    if content_type == "*/*":
        content_type = JSON
    if isinstance(body, str):
        body = body.encode()
    if not isinstance(body, bytes | bytearray):
        raise InferenceError(500, f"output_fn returned {type(body).__name__}, not bytes or str")
    return bytes(body), str(content_type)
