"""TF Serving's REST API on aiohttp (tensorflow_serving/model_servers/http_rest_api_handler.cc).

Same routing regexes, order of checks, status codes and `{"error": ...}` bodies as
`tensorflow_model_server --rest_api_port`, plus the Prometheus endpoint on the same port.
The local server's own additions: a request body limit (413) and a bind address.
"""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, NoReturn

from aiohttp import web

from serving import json_tensor
from serving.config import DEFAULT_MAX_BODY_BYTES, ServingConfig
from serving.inference import Inference
from serving.json_tensor import ApiError, invalid
from serving.servable import Model

log = logging.getLogger(__name__)

V1_RE = re.compile(r"(?i)/v1/.*")
PREDICT_RE = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.ASCII
)
STATUS_RE = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:\/(metadata))?", re.ASCII
)

# ToHTTPStatusCode (http_rest_api_util.cc).
HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INTERNAL": 500,
    "DATA_LOSS": 500,
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "UNAUTHENTICATED": 401,
    # not a TF status: the body limit, which TF Serving's HTTP layer (evhttp) answers itself
    "REQUEST_TOO_LARGE": 413,
}
# request_count's status label where it is not the error's code
METRIC_STATUS = {"REQUEST_TOO_LARGE": "INVALID_ARGUMENT"}
# libevent's evhttp_send_error body for paths outside /v1/.
NOT_FOUND_HTML = "<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n<H1>Not Found</H1>\n</BODY></HTML>\n"
INT64_MAX = 2**63 - 1
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


def _json_response(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json")


def error_response(err: ApiError) -> web.Response:
    return _json_response(HTTP_STATUS.get(err.code, 500), json_tensor.error_body(err.message))


class RestApi:
    """The REST handler for one model (the local server serves exactly one)."""

    def __init__(
        self,
        model: Model,
        config: ServingConfig,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        inference: Inference | None = None,
    ) -> None:
        """``inference``: the core shared with the gRPC handler (a new one if not given)."""
        self.model = model
        self.config = config
        self.inference = inference or Inference(model, config)
        self.metrics = self.inference.metrics
        self.max_body_bytes = max_body_bytes

    @property
    def in_flight(self) -> int:
        return self.inference.in_flight

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def close(self) -> None:
        await self.inference.close()

    # --- dispatch -----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.rel_url.raw_path
        if self.config.monitoring and path == self.config.monitoring_path:
            return web.Response(text=self.metrics.render(), content_type="text/plain")
        if not V1_RE.fullmatch(path):
            return web.Response(status=404, text=NOT_FOUND_HTML, content_type="text/html")
        self.inference.in_flight += 1
        try:
            return await self._handle_v1(request, path)
        except ApiError as err:
            return error_response(err)
        except Exception as err:  # a bug, not the client's fault: still a JSON answer, and the server lives on
            log.exception("internal error on %s %s", request.method, path)
            return error_response(ApiError("INTERNAL", f"{type(err).__name__}: {err}"))
        finally:
            self.inference.in_flight -= 1

    async def _handle_v1(self, request: web.Request, path: str) -> web.StreamResponse:
        method = request.method
        m = PREDICT_RE.fullmatch(path) if method == "POST" else None
        if m:
            name, version, label, verb = m.groups()
            return await self._model_call(request, _unquote(name), version, _unquote(label), verb.lower())
        m = STATUS_RE.fullmatch(path) if method == "GET" else None
        if m:
            name, version, label, sub = m.groups()
            name, label = _unquote(name), _unquote(label)
            version_number = _version(version)
            if sub and sub.lower() == "metadata":
                return self._metadata(name, version_number, label)
            return self._status(name, version_number, label)
        raise invalid(f"Malformed request: {method} {path}")

    async def _read_body(self, request: web.Request) -> bytes:
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            raise ApiError("REQUEST_TOO_LARGE", self._too_large(length))
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError("REQUEST_TOO_LARGE", self._too_large(None)) from None

    def _too_large(self, length: int | None) -> str:
        size = f"of {length} bytes " if length is not None else ""
        return f"Request body {size}is larger than the server's limit of {self.max_body_bytes} bytes"

    # --- model resolution ---------------------------------------------------------------

    # --- GET ------------------------------------------------------------------------------

    def _status(self, name: str | None, version: int | None, label: str | None) -> web.Response:
        if not name:
            raise invalid("Missing model name in request.")
        versions = self.inference.status_versions(name, version, label)
        body = {
            "model_version_status": [
                {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
                for v in versions
            ]
        }
        return _json_response(200, json.dumps(body, indent=1).encode())

    def _metadata(self, name: str | None, version: int | None, label: str | None) -> web.Response:
        if not name:
            raise invalid("Missing model name in request.")
        servable = self.inference.resolve(name, version, label)
        body = {
            "model_spec": {"name": servable.name, "signature_name": "", "version": str(servable.version)},
            "metadata": {"signature_def": {"signature_def": servable.signature_def_json}},
        }
        return _json_response(200, json.dumps(body, indent=1).encode())

    # --- POST -----------------------------------------------------------------------------

    async def _model_call(
        self, request: web.Request, name: str, version: str | None, label: str | None, verb: str
    ) -> web.Response:
        started = time.perf_counter()
        status = "OK"
        try:
            version_number = _version(version)
            body = await self._read_body(request)
            if verb != "predict":
                self._classify_regress(body, name, version_number, label, verb)  # always an ApiError
            response = _json_response(200, await self._predict(body, name, version_number, label))
        except ApiError as err:
            status = METRIC_STATUS.get(err.code, err.code)
            response = error_response(err)
        self.metrics.request_count.inc(name, status)
        if status == "OK":
            self.metrics.request_latency.observe((time.perf_counter() - started) * 1e6, name, verb, "REST")
        return response

    def _prepare(self, doc: Mapping[str, Any], body: bytes, name: str, version: int | None, label: str | None):
        sig_name = json_tensor.signature_name(doc)
        servable = self.inference.resolve(name, version, label)
        signature = servable.signature(sig_name)
        inputs = json_tensor.predict_tensors(doc, signature.input_dtypes, body)
        signature.check_shapes(inputs.tensors)
        return servable, signature, inputs

    async def _predict(self, body: bytes, name: str, version: int | None, label: str | None) -> bytes:
        doc = json_tensor.parse_body(body)
        servable, signature, inputs = self._prepare(doc, body, name, version, label)
        run_started = time.perf_counter()
        outputs = await self.inference.run(servable, signature.name, inputs.tensors)
        self.metrics.runtime_latency.observe((time.perf_counter() - run_started) * 1e6, name, "Predict", "TF1")
        return json_tensor.predict_body(outputs, inputs.row_format)

    def _classify_regress(
        self, body: bytes, name: str, version: int | None, label: str | None, verb: str
    ) -> NoReturn:
        doc = json_tensor.parse_body(body)
        sig_name = json_tensor.signature_name(doc) or "serving_default"
        _check_examples(doc)
        servable = self.inference.resolve(name, version, label)
        signature = servable.signatures.get(sig_name)
        if signature is None:
            raise invalid(f"No signature was found with the name: {sig_name}")
        kind, wanted = ("classification", CLASSIFY_METHOD) if verb == "classify" else ("regression", REGRESS_METHOD)
        if signature.method_name != wanted:
            raise invalid(f"Expected {kind} signature method_name to be {wanted}. Was: {signature.method_name}")
        raise ApiError("UNIMPLEMENTED", f"{verb} signatures are not supported by the local server")


def _unquote(value: str | None) -> str | None:
    return urllib.parse.unquote(value) if value is not None else None


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    value = int(text)
    if value > INT64_MAX:
        raise invalid(f"Failed to convert version: {text}")
    return value


def _check_examples(doc: Mapping[str, Any]) -> None:
    """FillClassifyRegressRequestFromJson's checks of 'context' and 'examples'."""
    if "context" in doc:
        _check_example(doc["context"])
    if "examples" not in doc:
        raise invalid(
            f"JSON Value: {json_tensor.value_to_string(doc)} When method is classify, key 'examples' is expected "
            "and was not found"
        )
    examples = doc["examples"]
    if not isinstance(examples, list):
        raise invalid(f"JSON Value: {json_tensor.value_to_string(doc)} Expecting 'examples' value to be an list/array")
    if not examples:
        raise invalid(f"JSON Value: {json_tensor.value_to_string(doc)} 'examples' value is an empty array")
    for example in examples:
        _check_example(example)


def _check_example(value: Any) -> None:
    if not isinstance(value, dict):
        raise invalid(f"Example must be JSON object but got JSON {json_tensor.type_name(value)}")
    for feature, content in value.items():
        kind = None
        for v in content if isinstance(content, list) else [content]:
            if v is None or isinstance(v, list) or (isinstance(v, dict) and not json_tensor.is_b64(v)):
                raise invalid(
                    f"Feature: {feature} has element with unexpected JSON type: {json_tensor.type_name(v)}"
                )
            this = "bytes" if isinstance(v, (str, dict)) else "float" if isinstance(v, float) else "int64"
            if kind is not None and kind != this:
                raise invalid(f"Unexpected element type in feature: {feature} expecting type: {kind}")
            if isinstance(v, dict):
                json_tensor.decode_b64(v)
            kind = this
