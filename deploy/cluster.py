"""Kubernetes backend: server-side apply an overlay, wait until the model answers, tear down.

Talks to the API server with the official Python client (typed APIs, server-side apply
with field manager ``servesweep``); builds the overlay with ``kubectl kustomize``. Tested
against `deploy/k8s_double.py` (a local API double); deploy/README.md says how to point it
at a real cluster.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from deploy import generators, pods, render
from deploy.spec import ClusterOptions, Config
from deploy.target import DeployError, Replica, Target, http_replica

# in-cluster generator agents send to the server pods (the headless Service's DNS name,
# generators.in_cluster_bases): the sweep needs no address of its own; it reads each pod
# through the API server (deploy.pods)
IN_CLUSTER = "in-cluster"

FIELD_MANAGER = "servesweep"
PORT_FORWARD = "port-forward"  # the --endpoint that reaches one pod (endpoint_refusal)
ENDPOINTS = ("loadbalancer", PORT_FORWARD, IN_CLUSTER)  # or a base URL http://HOST:PORT
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
# Creation order; teardown goes in reverse.
KIND_ORDER = ("Namespace", "ConfigMap", "Service", "PodDisruptionBudget", "Deployment")
# Pod states that will not fix themselves: fail at once instead of waiting out the timeout.
FATAL_WAITING = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
}


@dataclasses.dataclass(frozen=True)
class Timeouts:
    rollout_s: float = 900.0
    load_balancer_s: float = 300.0
    model_available_s: float = 300.0
    teardown_s: float = 300.0
    poll_s: float = 2.0


@dataclasses.dataclass(frozen=True)
class _Api:
    group: str  # "core", "apps", "policy", "batch"
    plural: str
    namespaced: bool = True


_APIS = {
    "Namespace": _Api("core", "namespace", namespaced=False),
    "ConfigMap": _Api("core", "config_map"),
    "Service": _Api("core", "service"),
    "PodDisruptionBudget": _Api("policy", "pod_disruption_budget"),
    "Deployment": _Api("apps", "deployment"),
    "Job": _Api("batch", "job"),  # the generator agents (deploy.agents)
}


class Kube:
    """The few API calls the backend needs, returning plain dicts."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.api_client = api_client
        self.host = api_client.configuration.host
        self._apis = {
            "core": k8s.CoreV1Api(api_client),
            "apps": k8s.AppsV1Api(api_client),
            "policy": k8s.PolicyV1Api(api_client),
            "batch": k8s.BatchV1Api(api_client),
        }

    def _call(self, verb: str, kind: str, name: str, namespace: str, **kw: Any) -> dict[str, Any]:
        spec = _APIS.get(kind)
        if spec is None:
            raise DeployError(f"cannot {verb} a {kind}: not one of {', '.join(_APIS)}")
        method = f"{verb}_{'namespaced_' if spec.namespaced else ''}{spec.plural}"
        args: tuple[Any, ...] = (name, namespace) if spec.namespaced else (name,)
        resp = getattr(self._apis[spec.group], method)(*args, _preload_content=False, **kw)
        data = resp.data
        return json.loads(data) if data else {}

    def apply(self, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
        meta = obj["metadata"]
        return self._call(
            "patch",
            obj["kind"],
            meta["name"],
            meta.get("namespace", namespace),
            body=obj,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY_CONTENT_TYPE,
        )

    def read(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        try:
            return self._call("read", kind, name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def delete(self, kind: str, name: str, namespace: str) -> bool:
        try:
            self._call("delete", kind, name, namespace, propagation_policy="Foreground")
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    def pods(self, namespace: str, selector: dict[str, str]) -> list[dict[str, Any]]:
        sel = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        resp = self._apis["core"].list_namespaced_pod(namespace, label_selector=sel, _preload_content=False)
        return json.loads(resp.data).get("items", [])


def api_error(e: ApiException, doing: str) -> DeployError:
    message = e.reason or ""
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        message = json.loads(e.body).get("message", message)
    return DeployError(f"{doing}: the API server answered {e.status}: {message}")


def endpoint_refusal(endpoint: str, config: Config) -> str | None:
    """Why ``config`` cannot be measured through ``endpoint`` (None: it can).
    ``kubectl port-forward service/NAME`` forwards to one pod it picks, so a Config of
    several replicas would be measured as one of them."""
    if endpoint != PORT_FORWARD or config.replicas <= 1:
        return None
    return (f"{config.name}: --endpoint port-forward would measure one of its {config.replicas} replicas "
            "(kubectl port-forward service/NAME forwards to a single pod it picks), not the Service. "
            "Measure the Service: --endpoint loadbalancer (the spec's cluster.service_type: LoadBalancer), "
            "or --endpoint http://HOST:PORT for an address of the Service reachable from here, or in-cluster "
            "generators (--generators N), which send to every replica from inside the cluster. port-forward "
            "is for a smoke test of a 1-replica Config.")


class ClusterBackend:
    """Deploys Configs to the cluster ``api_client`` points at, one at a time (the search
    measures them in blocks, alternating their order between repeats)."""

    holds_many = False

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        options: ClusterOptions,
        work_dir: Path,
        endpoint: str = "loadbalancer",
        allow_tags: bool = False,
        timeouts: Timeouts = Timeouts(),
        kubectl: str = "kubectl",
        keep_on_failure: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if endpoint not in ENDPOINTS and not endpoint.startswith(("http://", "https://")):
            raise DeployError(f"endpoint {endpoint!r}: use {', '.join(ENDPOINTS)} or a base URL http://HOST:PORT")
        self.kube = Kube(api_client)
        self.options = options
        self.work_dir = Path(work_dir)
        self.endpoint = endpoint
        self.allow_tags = allow_tags
        self.timeouts = timeouts
        self.kubectl = kubectl
        self.keep_on_failure = keep_on_failure
        self._sleep = sleep
        self._clock = clock
        self._applied: list[tuple[str, str, str]] = []
        self._forward: subprocess.Popen[str] | None = None

    # --- Backend -----------------------------------------------------------------------

    def deploy(self, config: Config) -> Target:
        """Applies ``config``'s overlay and waits until its model answers.

        On failure what was applied is deleted again (unless ``keep_on_failure``, for
        looking at it with kubectl) and DeployError says what went wrong.
        """
        if self._applied:
            raise DeployError("a configuration is still deployed: call teardown() first")
        refused = endpoint_refusal(self.endpoint, config)
        if refused:
            raise DeployError(refused)
        try:
            return self._bring_up(config)
        except render.RenderError as e:
            raise DeployError(str(e)) from None
        except ApiException as e:
            err = api_error(e, f"deploying {config.name}")
        except Urllib3Error as e:
            err = self._unreachable(e)
        except DeployError as e:
            err = e
        if not self.keep_on_failure:
            with contextlib.suppress(DeployError):
                self.teardown()
        raise err

    def _bring_up(self, config: Config) -> Target:
        overlay = render.render_config(config, self.work_dir, options=self.options, allow_tags=self.allow_tags)
        objects = render.kustomize_build(overlay, kubectl=self.kubectl)
        ns = self.options.namespace
        objects = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, *objects]
        objects.sort(key=lambda o: KIND_ORDER.index(o["kind"]) if o["kind"] in KIND_ORDER else len(KIND_ORDER))
        deployment = next(o for o in objects if o["kind"] == "Deployment")
        service = next(o for o in objects if o["kind"] == "Service")
        for obj in objects:
            key = (obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace", ns))
            try:
                self.kube.apply(obj, ns)
            except ApiException as e:
                if obj["kind"] == "Namespace" and e.status == 403:
                    continue  # the cluster admin's, made beforehand: the sweep's Role has no say over it
                raise api_error(e, f"applying {key[0]}/{key[1]}") from None
            if obj["kind"] != "Namespace":  # the namespace outlives a configuration
                self._applied.append(key)
        self._wait_rollout(deployment, ns)
        replicas = functools.partial(self._replicas, ns, deployment["spec"]["selector"]["matchLabels"])
        model = config.serving.model_name
        if self.endpoint == IN_CLUSTER:
            base, grpc_base = generators.in_cluster_bases(self.options)
            for replica in replicas():  # each pod through the API server: this machine has no address
                self._wait_model(replica, model)
        else:
            base, grpc_base = self._endpoint(service, ns)
            self._wait_model(http_replica(base), model)
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        image = container["image"]
        _, tag, digest = render.split_image(image)
        identity = {
            "kind": "tensorflow_model_server",
            "version": tag or "",
            "argv": [*container.get("command", []), *container.get("args", [])],
            "image_digest": digest,
            "image": image,
            "namespace": ns,
            "replicas": deployment["spec"].get("replicas", 1),
            "endpoint": "url" if self.endpoint.startswith("http") else self.endpoint,
        }
        return Target(base_urls=(base,), model_name=model, identity=identity,
                      grpc_bases=(grpc_base,) if grpc_base else (), replica_list=replicas)

    def _replicas(self, ns: str, selector: dict[str, str]) -> tuple[Replica, ...]:
        """The Config's ready server pods, by name, each read through the pod proxy."""
        try:
            found = self.kube.pods(ns, selector)
        except ApiException as e:
            raise api_error(e, "listing the server pods") from None
        except Urllib3Error as e:
            raise self._unreachable(e) from None
        names = sorted(p["metadata"]["name"] for p in found if pods.is_ready(p))
        return tuple(pods.replica(self.kube.api_client, ns, name, render.REST_PORT) for name in names)

    def problems(self, config: Config | None = None) -> list[str]:
        """What went wrong without stopping the measurement: a port-forward that died
        (one Config is deployed at a time, so ``config`` names it or nothing)."""
        if self._forward is not None and self._forward.poll() is not None:
            return [f"kubectl port-forward exited with code {self._forward.returncode}"]
        return []

    def teardown(self, config: Config | None = None) -> None:
        """Deletes what was applied (one Config at a time: ``config`` changes nothing)."""
        self._stop_forward()
        errors = []
        for kind, name, ns in reversed(self._applied):
            try:
                self.kube.delete(kind, name, ns)
            except ApiException as e:
                errors.append(str(api_error(e, f"deleting {kind}/{name}")))
            except Urllib3Error as e:
                raise self._unreachable(e) from None
        gone = self._wait_gone(self._applied)
        self._applied = []
        if errors:
            raise DeployError("; ".join(errors))
        if not gone:
            raise DeployError(f"teardown: objects still present after {self.timeouts.teardown_s:.0f} s")

    def _unreachable(self, e: Exception) -> DeployError:
        host = self.kube.host
        return DeployError(f"cannot reach the API server at {host}: {getattr(e, 'reason', e)}")

    # --- waiting ------------------------------------------------------------------------

    def _deadline(self, seconds: float) -> Callable[[], bool]:
        end = self._clock() + seconds
        return lambda: self._clock() >= end

    def _wait_rollout(self, deployment: dict[str, Any], ns: str) -> None:
        name = deployment["metadata"]["name"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        expired = self._deadline(self.timeouts.rollout_s)
        while True:
            dep = self.kube.read("Deployment", name, ns)
            if dep is None:
                raise DeployError(f"Deployment {ns}/{name} disappeared while waiting for it")
            want = dep.get("spec", {}).get("replicas", 1)
            st = dep.get("status", {})
            if (
                st.get("observedGeneration", 0) >= dep["metadata"].get("generation", 0)
                and st.get("updatedReplicas", 0) == want
                and st.get("availableReplicas", 0) == want
                and st.get("readyReplicas", 0) == want
            ):
                return
            for cond in st.get("conditions", []):
                if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
                    raise DeployError(f"Deployment {ns}/{name} failed to progress: {cond.get('message', '')}")
            problems = pod_problems(self.kube.pods(ns, selector))
            fatal = [p for p in problems if p[1] in FATAL_WAITING]
            if fatal:
                raise DeployError(f"Deployment {ns}/{name} cannot start: " + _describe(fatal))
            if expired():
                detail = f"; pods: {_describe(problems)}" if problems else ""
                raise DeployError(
                    f"Deployment {ns}/{name}: {st.get('availableReplicas', 0)}/{want} replicas available after "
                    f"{self.timeouts.rollout_s:.0f} s{detail}"
                )
            self._sleep(self.timeouts.poll_s)

    def _endpoint(self, service: dict[str, Any], ns: str) -> tuple[str, str | None]:
        """The Service's REST base URL and gRPC base (``grpc://HOST:PORT``, None for a
        given http:// endpoint, which names REST only)."""
        name = service["metadata"]["name"]
        if self.endpoint.startswith(("http://", "https://")):
            return self.endpoint.rstrip("/"), None
        if self.endpoint == PORT_FORWARD:
            return self._port_forward(name, ns)
        expired = self._deadline(self.timeouts.load_balancer_s)
        while True:
            svc = self.kube.read("Service", name, ns) or {}
            if svc.get("spec", {}).get("type") != "LoadBalancer":
                raise DeployError(
                    f"Service {ns}/{name} is not a LoadBalancer: set cluster.service_type: LoadBalancer in the "
                    "spec, or (a 1-replica Config) --endpoint port-forward"
                )
            ingress = svc.get("status", {}).get("loadBalancer", {}).get("ingress") or []
            if ingress:
                host = ingress[0].get("ip") or ingress[0].get("hostname")
                ports = {p.get("name"): p["port"] for p in svc["spec"]["ports"]}
                grpc_base = f"grpc://{host}:{ports['grpc']}" if "grpc" in ports else None
                return f"http://{host}:{ports['rest']}", grpc_base
            if expired():
                raise DeployError(
                    f"Service {ns}/{name} got no load-balancer address in {self.timeouts.load_balancer_s:.0f} s"
                )
            self._sleep(self.timeouts.poll_s)

    def _port_forward(self, name: str, ns: str) -> tuple[str, str]:
        cmd = [self.kubectl, "port-forward", "--namespace", ns, "--address", "127.0.0.1", f"service/{name}",
               f":{render.REST_PORT}", f":{render.GRPC_PORT}"]
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        except OSError as e:
            raise DeployError(f"cannot run {self.kubectl} port-forward: {e}") from None
        self._forward = proc
        local: dict[int, str] = {}  # remote port -> local port, one line each
        while len(local) < 2:
            line = proc.stdout.readline() if proc.stdout else ""
            m = re.search(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line)
            if not m:
                self._stop_forward()
                raise DeployError(f"kubectl port-forward did not start: {line.strip() or 'no output'}")
            local[int(m.group(2))] = m.group(1)
        return f"http://127.0.0.1:{local[render.REST_PORT]}", f"grpc://127.0.0.1:{local[render.GRPC_PORT]}"

    def _stop_forward(self) -> None:
        if self._forward is not None:
            self._forward.terminate()
            try:
                self._forward.wait(5)
            except subprocess.TimeoutExpired:
                self._forward.kill()
                self._forward.wait()
            self._forward = None

    def _wait_model(self, replica: Replica, model: str) -> None:
        expired = self._deadline(self.timeouts.model_available_s)
        while True:
            state = model_state(replica, model)
            if state == "AVAILABLE":
                return
            if expired():
                raise DeployError(f"model {model} at {replica.name} not AVAILABLE after "
                                  f"{self.timeouts.model_available_s:.0f} s: {state}")
            self._sleep(self.timeouts.poll_s)

    def _wait_gone(self, keys: Sequence[tuple[str, str, str]]) -> bool:
        expired = self._deadline(self.timeouts.teardown_s)
        while True:
            left = [k for k in keys if self.kube.read(*k) is not None]
            if not left:
                return True
            if expired():
                return False
            self._sleep(self.timeouts.poll_s)


def model_state(replica: Replica, model: str, timeout_s: float = 5.0) -> str:
    """The best state TF Serving reports for ``model`` at ``replica`` (AVAILABLE, LOADING,
    ...) or why none."""
    try:
        doc = json.loads(replica.get(f"/v1/models/{model}", timeout_s))
    except DeployError as e:
        return f"unreachable ({e})"
    except ValueError as e:
        return f"not TF Serving's model status ({e})"
    states = [s.get("state", "") for s in doc.get("model_version_status", [])]
    return "AVAILABLE" if "AVAILABLE" in states else (",".join(states) or "no versions")


def pod_problems(pods: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(pod, reason, message) for containers waiting or pods that cannot be scheduled."""
    out = []
    for pod in pods:
        name = pod.get("metadata", {}).get("name", "?")
        st = pod.get("status", {})
        for cond in st.get("conditions", []) or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                out.append((name, cond.get("reason", "Unschedulable"), cond.get("message", "")))
        for cs in st.get("containerStatuses", []) or []:
            waiting = (cs.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
                out.append((name, waiting["reason"], waiting.get("message", "")))
    return out


def _describe(problems: Sequence[tuple[str, str, str]]) -> str:
    return "; ".join(f"{pod}: {reason} {msg}".strip() for pod, reason, msg in problems)
