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
  ``model_loading_polls`` reads, then AVAILABLE;
* a Job (batch/v1, Indexed) gets one Pod per index, each a local process that
  ``start_pod(job, index)`` starts (a ``PodProcess``: its address, whether it is alive,
  how to kill it); a pod whose process died is replaced, as the Job controller does, by a
  new pod with the same index; the pod proxy
  (``/api/v1/namespaces/NS/pods/NAME:PORT/proxy/PATH``) forwards to that process, and
  deleting the Job kills its pods;
* with ``start_server_pod(deployment, index)``, a Deployment's replicas are Pods too,
  local processes (a server each, on a pod IP of its own in 127.0.0.0/8 and the
  container's ports), replaced when one dies, restarted when the Deployment changes,
  killed when it is deleted; the Deployment is ready when they all run;
* cluster DNS, for the pods: ``hosts_path`` is a hosts file (``/etc/hosts`` format, kept
  current) naming every headless Service (``clusterIP: None``) ``NAME.NS.svc.cluster.local``
  with the pod IP of each ready pod it selects, as cluster DNS answers for a headless
  Service. A pod reads it as its ``/etc/hosts`` (the agent's ``--hosts``); nothing else
  is rewritten, and a ClusterIP Service has no address here (there is no kube-proxy).

Every request is logged in ``requests`` as (method, path, content type, query).
"""

from __future__ import annotations

import copy
import json
import os
import re
import tempfile
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_COLLECTIONS = {
    ("", "configmaps"): "ConfigMap",
    ("", "services"): "Service",
    ("", "pods"): "Pod",
    ("apps/v1", "deployments"): "Deployment",
    ("policy/v1", "poddisruptionbudgets"): "PodDisruptionBudget",
    ("batch/v1", "jobs"): "Job",
    ("", "serviceaccounts"): "ServiceAccount",
    ("rbac.authorization.k8s.io/v1", "roles"): "Role",
    ("rbac.authorization.k8s.io/v1", "rolebindings"): "RoleBinding",
}
_GROUPS = "|".join(sorted(re.escape(g) for g, _ in _COLLECTIONS if g))  # the API groups it serves
_NAMESPACED = re.compile(
    rf"^/(?:api/v1|apis/(?P<group>{_GROUPS}))/namespaces/(?P<ns>[^/]+)/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?$"
)
_NAMESPACE = re.compile(r"^/api/v1/namespaces/(?P<name>[^/]+)$")
_MODEL = re.compile(r"^/v1/models/(?P<model>[^/:]+)$")
_POD_PROXY = re.compile(
    r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<pod>[^/:]+)(?::(?P<port>\d+))?/proxy(?P<rest>/.*)?$")
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"


CLUSTER_DOMAIN = "svc.cluster.local"


class PodProcess:
    """What ``start_pod`` returns: a local process standing in for one pod, at ``ip`` (its
    pod IP); the pod proxy reaches it at ``port`` whatever port a call names, or at the
    named port when ``port`` is None (a pod listening on its containers' own ports)."""

    def __init__(self, port: int | None, alive: Callable[[], bool], kill: Callable[[], None],
                 ip: str = "127.0.0.1") -> None:
        self.port, self.alive, self.kill, self.ip = port, alive, kill, ip


class KubeApiDouble:
    """Run with ``with KubeApiDouble() as api: ... api.url``."""

    def __init__(
        self,
        *,
        ready_after_polls: int = 2,
        lb_after_polls: int = 1,
        model_loading_polls: int = 1,
        stuck_reason: str | None = None,
        start_pod: Callable[[dict[str, Any], int], PodProcess] | None = None,
        start_server_pod: Callable[[dict[str, Any], int], PodProcess] | None = None,
    ) -> None:
        self.ready_after_polls = ready_after_polls
        self.lb_after_polls = lb_after_polls
        self.model_loading_polls = model_loading_polls
        self.stuck_reason = stuck_reason
        self.start_pod = start_pod
        self.start_server_pod = start_server_pod
        self.pods: dict[tuple[str, str], tuple[dict[str, Any], PodProcess]] = {}  # (ns, name) -> (Pod, process)
        self._owners: dict[tuple[str, str], tuple[tuple[str, str, str], int]] = {}  # pod -> (owner key, index)
        self.replaced = 0  # pods the "Job controller" (or ReplicaSet) put in place of dead ones
        self._dir = tempfile.TemporaryDirectory(prefix="k8s-double-")
        self.hosts_path = os.path.join(self._dir.name, "hosts")
        self._pending: list[tuple[tuple[str, str, str], dict[str, Any], int]] = []  # pods to start
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, str, dict[str, list[str]]]] = []
        self._polls: dict[tuple[str, str, str], int] = {}
        self._model_polls: dict[str, int] = {}
        self._lock = threading.Lock()
        self._write_hosts()
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
        with self._lock:
            for _, process in self.pods.values():
                process.kill()
            self.pods.clear()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        self._dir.cleanup()

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
                proxy = _POD_PROXY.match(parts.path)
                if proxy:  # forwarded without the lock: an agent may take seconds to answer
                    with double._lock:
                        double.requests.append((method, parts.path, ctype, query))
                    code, data = double._proxy(method, proxy, parts.query, ctype, body)
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                with double._lock:
                    double.requests.append((method, parts.path, ctype, query))
                    code, out = double._route(method, parts.path, query, ctype, body)
                double._launch_pending()  # pods start outside the lock: a process takes a while
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
        if method == "GET" and path.rstrip("/") in _DISCOVERY:
            return 200, _DISCOVERY[path.rstrip("/")]
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
            if key[0] == "Job" and old is None:
                self._start_pods(key, obj)
            if key[0] == "Deployment" and self.start_server_pod is not None and (
                    old is None or old.get("spec") != obj.get("spec")):
                self._delete_owned_pods(key)
                self._start_pods(key, obj)
            self._write_hosts()
            return 201 if old is None else 200, obj
        if key not in self.objects:
            return _status(404, f'{key[0].lower()}s "{key[2]}" not found', reason="NotFound")
        if method == "GET":
            self._polls[key] = self._polls.get(key, 0) + 1
            return 200, self._with_status(key)
        if method == "DELETE":
            self.objects.pop(key)
            self._delete_owned_pods(key)
            self._write_hosts()
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        return _status(405, "method not allowed")

    def _with_status(self, key: tuple[str, str, str]) -> dict:
        obj = copy.deepcopy(self.objects[key])
        polls = self._polls[key]
        if key[0] == "Deployment":
            want = obj.get("spec", {}).get("replicas", 1)
            ready = want if (self.stuck_reason is None and polls >= self.ready_after_polls) else 0
            if self.start_server_pod is not None:  # its pods are processes: ready when they all run
                self._replace_dead_pods()
                ready = min(ready, sum(owner == key for owner, _ in self._owners.values()))
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
        self._replace_dead_pods()
        selector = dict(p.split("=", 1) for p in (query.get("labelSelector") or [""])[0].split(",") if "=" in p)
        items = [copy.deepcopy(pod) for (n, _), (pod, _) in sorted(self.pods.items()) if n == ns
                 and selector.items() <= pod["metadata"]["labels"].items()]
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

    # --- Jobs: pods as local processes -------------------------------------------------

    # --- Jobs and Deployments: pods as local processes ---------------------------------

    def _start_pods(self, key: tuple[str, str, str], owner: dict[str, Any]) -> None:
        spec = owner.get("spec", {})
        for index in range(spec.get("completions" if key[0] == "Job" else "replicas", 1)):
            self._start_pod(key, owner, index)

    def _start_pod(self, key: tuple[str, str, str], owner: dict[str, Any], index: int) -> None:
        """Queues pod ``index`` of a Job or Deployment (started by ``_launch_pending``, after the lock)."""
        if (self.start_pod if key[0] == "Job" else self.start_server_pod) is not None:  # else pods never start
            self._pending.append((key, owner, index))

    def _launch_pending(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    return
                key, owner, index = self._pending.pop(0)
            process = (self.start_pod if key[0] == "Job" else self.start_server_pod)(owner, index)
            with self._lock:
                now = self.objects.get(key)
                if now is not None and now.get("spec") == owner.get("spec"):
                    self._add_pod(key, owner, index, process)
                    self._write_hosts()
                    continue
            process.kill()  # its owner went (or changed) while the pod was starting

    def _add_pod(self, key: tuple[str, str, str], owner: dict[str, Any], index: int, process: PodProcess) -> None:
        labels = dict(owner["spec"]["template"]["metadata"].get("labels", {}))
        if key[0] == "Job":
            name = f"{key[2]}-{index}-{uuid.uuid4().hex[:5]}"
            labels |= {"job-name": key[2], INDEX_LABEL: str(index)}
        else:
            name = f"{key[2]}-{uuid.uuid4().hex[:10]}-{uuid.uuid4().hex[:5]}"
        pod = {"kind": "Pod", "apiVersion": "v1",
               "metadata": {"name": name, "namespace": key[1], "labels": labels},
               "status": {"phase": "Running", "podIP": process.ip,
                          "conditions": [{"type": "Ready", "status": "True"}]}}
        self.pods[(key[1], name)] = (pod, process)
        self._owners[(key[1], name)] = (key, index)

    def _replace_dead_pods(self) -> None:
        changed = False
        for pod_key, (_, process) in list(self.pods.items()):
            if not process.alive():
                del self.pods[pod_key]
                owner, index = self._owners.pop(pod_key)
                changed = True
                if owner in self.objects:
                    self.replaced += 1
                    self._start_pod(owner, self.objects[owner], index)
        if changed:
            self._write_hosts()

    def _delete_owned_pods(self, key: tuple[str, str, str]) -> None:
        for pod_key, (_, process) in list(self.pods.items()):
            if self._owners[pod_key][0] == key:
                process.kill()
                del self.pods[pod_key]
                del self._owners[pod_key]

    def _write_hosts(self) -> None:
        """``hosts_path``: each headless Service's name with its ready pods' IPs (replaced
        whole, so a reader never sees half of it)."""
        lines = ["# the API double's cluster DNS: headless Services and their ready pods"]
        for (kind, ns, name), svc in sorted(self.objects.items()):
            spec = svc.get("spec", {})
            if kind != "Service" or spec.get("clusterIP") != "None":
                continue
            selector = spec.get("selector") or {}
            for (pod_ns, _), (pod, process) in sorted(self.pods.items()):
                if pod_ns == ns and selector.items() <= pod["metadata"]["labels"].items() and process.alive():
                    lines.append(f"{process.ip} {name}.{ns}.{CLUSTER_DOMAIN}")
        tmp = self.hosts_path + ".tmp"
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, self.hosts_path)

    def _proxy(self, method: str, m: re.Match, query: str, ctype: str, body: bytes) -> tuple[int, bytes]:
        with self._lock:
            found = self.pods.get((m["ns"], m["pod"]))
        if found is None or not found[1].alive():
            return 503, json.dumps(_status(503, f'pod "{m["pod"]}" has no running process')[1]).encode()
        process = found[1]
        port = process.port if process.port is not None else m["port"] or 80
        url = f"http://{process.ip}:{port}{m['rest'] or '/'}" + (f"?{query}" if query else "")
        request = urllib.request.Request(url, data=body if method in ("POST", "PUT", "PATCH") else None,
                                         method=method, headers={"Content-Type": ctype} if ctype else {})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError as e:
            return 503, json.dumps(_status(503, f"proxying to pod {m['pod']}: {e}")[1]).encode()

    def _model_status(self, model: str) -> tuple[int, dict]:
        n = self._model_polls[model] = self._model_polls.get(model, 0) + 1
        state = "AVAILABLE" if n > self.model_loading_polls else "LOADING"
        return 200, {
            "model_version_status": [
                {"version": "1", "state": state, "status": {"error_code": "OK", "error_message": ""}}
            ]
        }


def _discovery() -> dict[str, dict[str, Any]]:
    """Legacy discovery documents for what the double serves (kubectl maps kinds with them)."""
    resources: dict[str, list[dict[str, Any]]] = {"v1": [
        {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace",
         "verbs": ["get", "patch", "delete"]}]}
    for (group_version, plural), kind in _COLLECTIONS.items():
        resources.setdefault(group_version or "v1", []).append(
            {"name": plural, "singularName": kind.lower(), "namespaced": True, "kind": kind,
             "verbs": ["get", "list", "patch", "delete"]})
    docs: dict[str, dict[str, Any]] = {
        "/api": {"kind": "APIVersions", "versions": ["v1"],
                 "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
        "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": gv.split("/")[0], "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
             "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]}}
            for gv in sorted(resources) if gv != "v1"]},
    }
    for gv, items in resources.items():
        docs["/api/v1" if gv == "v1" else f"/apis/{gv}"] = {
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": items}
    return docs


_DISCOVERY = _discovery()


def _status(code: int, message: str, reason: str = "") -> tuple[int, dict]:
    return code, {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
