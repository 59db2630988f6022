"""A small local stand-in for the Kubernetes API server (a test double, not a cluster).

It answers only the endpoints `deploy/cluster.py` uses, on 127.0.0.1, so the cluster
backend can be tested here where no API server can run:

* server-side apply (PATCH with ``application/apply-patch+yaml`` and ``fieldManager``)
  and GET/DELETE of Namespaces, ConfigMaps, Services, Deployments and
  PodDisruptionBudgets; Pods can be listed (by label selector);
* a Deployment becomes fully available after ``ready_after_polls`` reads (or never,
  with pods reporting ``stuck_reason`` such as ImagePullBackOff);
* a LoadBalancer Service gets ``status.loadBalancer.ingress = [{ip: 127.0.0.1}]`` after
  ``lb_after_polls`` reads; standing in for the cloud load balancer, the double maps
  the Service's ``rest`` port to its own listener, where
* ``GET /v1/models/<name>`` answers like TF Serving's model status: LOADING for
  ``model_loading_polls`` reads, then AVAILABLE.

Every request is logged in ``requests`` as (method, path, content type, query).
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_COLLECTIONS = {
    ("", "configmaps"): "ConfigMap",
    ("", "services"): "Service",
    ("", "pods"): "Pod",
    ("apps/v1", "deployments"): "Deployment",
    ("policy/v1", "poddisruptionbudgets"): "PodDisruptionBudget",
}
_NAMESPACED = re.compile(
    r"^/(?:api/v1|apis/(?P<group>apps/v1|policy/v1))/namespaces/(?P<ns>[^/]+)/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?$"
)
_NAMESPACE = re.compile(r"^/api/v1/namespaces/(?P<name>[^/]+)$")
_MODEL = re.compile(r"^/v1/models/(?P<model>[^/:]+)$")


class KubeApiDouble:
    """Run with ``with KubeApiDouble() as api: ... api.url``."""

    def __init__(
        self,
        *,
        ready_after_polls: int = 2,
        lb_after_polls: int = 1,
        model_loading_polls: int = 1,
        stuck_reason: str | None = None,
    ) -> None:
        self.ready_after_polls = ready_after_polls
        self.lb_after_polls = lb_after_polls
        self.model_loading_polls = model_loading_polls
        self.stuck_reason = stuck_reason
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, str, dict[str, list[str]]]] = []
        self._polls: dict[tuple[str, str, str], int] = {}
        self._model_polls: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> KubeApiDouble:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def kinds(self) -> list[str]:
        with self._lock:
            return sorted(f"{k[0]}/{k[2]}" for k in self.objects)

    # --- request handling -------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                ctype = self.headers.get("Content-Type", "")
                with double._lock:
                    double.requests.append((method, parts.path, ctype, query))
                    code, out = double._route(method, parts.path, query, ctype, body)
                self._send(code, out)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PUT(self) -> None:
                self._handle("PUT")

        return Handler

    def _route(self, method: str, path: str, query: dict, ctype: str, body: bytes) -> tuple[int, dict]:
        m = _MODEL.match(path)
        if m and method == "GET":
            return self._model_status(m["model"])
        m = _NAMESPACE.match(path)
        if m:
            return self._object(method, ("Namespace", "", m["name"]), query, ctype, body)
        m = _NAMESPACED.match(path)
        if m:
            kind = _COLLECTIONS.get((m["group"] or "", m["plural"]))
            if kind is None:
                return _status(404, f"the double does not serve {m['plural']}")
            if m["name"] is None:
                if method != "GET":
                    return _status(405, "method not allowed")
                return self._list(kind, m["ns"], query)
            return self._object(method, (kind, m["ns"], m["name"]), query, ctype, body)
        return _status(404, f"the double does not serve {method} {path}")

    def _object(self, method: str, key: tuple[str, str, str], query: dict, ctype: str, body: bytes):
        if method == "PATCH":
            if not ctype.startswith("application/apply-patch+yaml"):
                return _status(415, f"the double only accepts server-side apply, got {ctype!r}")
            if not query.get("fieldManager"):
                return _status(400, "fieldManager is required for apply patch")
            obj = json.loads(body)  # the client sends JSON, which is YAML
            if obj.get("kind") != key[0] or obj.get("metadata", {}).get("name") != key[2]:
                return _status(400, f"body {obj.get('kind')}/{obj.get('metadata', {}).get('name')} does not match URL")
            old = self.objects.get(key)
            meta = obj.setdefault("metadata", {})
            if key[1]:
                meta.setdefault("namespace", key[1])
            meta["uid"] = old["metadata"]["uid"] if old else str(uuid.uuid4())
            meta["generation"] = (old["metadata"]["generation"] + 1) if old else 1
            if key[0] == "Service":
                for port in obj.get("spec", {}).get("ports", []):
                    if port.get("name") == "rest":
                        port["port"] = self.port  # stands in for the load balancer's port
            self.objects[key] = obj
            self._polls[key] = 0
            return 201 if old is None else 200, obj
        if key not in self.objects:
            return _status(404, f'{key[0].lower()}s "{key[2]}" not found', reason="NotFound")
        if method == "GET":
            self._polls[key] = self._polls.get(key, 0) + 1
            return 200, self._with_status(key)
        if method == "DELETE":
            self.objects.pop(key)
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        return _status(405, "method not allowed")

    def _with_status(self, key: tuple[str, str, str]) -> dict:
        obj = copy.deepcopy(self.objects[key])
        polls = self._polls[key]
        if key[0] == "Deployment":
            want = obj.get("spec", {}).get("replicas", 1)
            ready = want if (self.stuck_reason is None and polls >= self.ready_after_polls) else 0
            obj["status"] = {
                "observedGeneration": obj["metadata"]["generation"],
                "replicas": want,
                "updatedReplicas": want,
                "readyReplicas": ready,
                "availableReplicas": ready,
            }
        elif key[0] == "Service" and obj.get("spec", {}).get("type") == "LoadBalancer":
            ingress = [{"ip": "127.0.0.1"}] if polls >= self.lb_after_polls else []
            obj["status"] = {"loadBalancer": {"ingress": ingress} if ingress else {}}
        return obj

    def _list(self, kind: str, ns: str, query: dict) -> tuple[int, dict]:
        if kind != "Pod":
            return _status(405, "the double lists pods only")
        items = []
        if self.stuck_reason:
            for (k, n, name), _obj in self.objects.items():
                if k == "Deployment" and n == ns:
                    items.append(
                        {
                            "metadata": {"name": f"{name}-0", "namespace": ns},
                            "status": {
                                "phase": "Pending",
                                "containerStatuses": [
                                    {
                                        "name": "tfs",
                                        "ready": False,
                                        "restartCount": 0,
                                        "image": "",
                                        "imageID": "",
                                        "state": {"waiting": {"reason": self.stuck_reason, "message": "double"}},
                                    }
                                ],
                            },
                        }
                    )
        return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}

    def _model_status(self, model: str) -> tuple[int, dict]:
        n = self._model_polls[model] = self._model_polls.get(model, 0) + 1
        state = "AVAILABLE" if n > self.model_loading_polls else "LOADING"
        return 200, {
            "model_version_status": [
                {"version": "1", "state": state, "status": {"error_code": "OK", "error_message": ""}}
            ]
        }


def _status(code: int, message: str, reason: str = "") -> tuple[int, dict]:
    return code, {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
