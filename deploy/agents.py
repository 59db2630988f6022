"""In-cluster generator agents: their Job brought up and down, and each reached through the
API server's pod proxy (``deploy.generators`` renders the Job).

``PodProxyAgent`` is a link to one agent pod in the shape ``loadgen.remote`` drives
(``name``, ``call(method, path, body, timeout) -> dict``), through the official client's
own request machinery (``ApiClient.param_serialize`` / ``call_api``, the bearer token and
TLS of the kubeconfig): the generated ``connect_*_pod_proxy`` methods take no request
body, and the control API needs one.

``GeneratorJob`` applies the Job, waits until every index has a running, ready pod, and
gives the links in index order; ``links()`` again after a failure finds the pod the Job
put in place of one that died (same index, new name). ``delete()`` removes the Job and
its pods.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from deploy import generators
from deploy.cluster import Kube, api_error
from deploy.configs import ClusterOptions
from deploy.target import DeployError
from formats.agent import AGENT_PORT, AgentCallError

INDEX_LABEL = "batch.kubernetes.io/job-completion-index"  # set by Kubernetes on an Indexed Job's pods
JOB_NAME_LABEL = "job-name"


@dataclasses.dataclass(frozen=True)
class PodProxyAgent:
    api_client: Any  # kubernetes.client.ApiClient
    namespace: str
    pod: str
    port: int = AGENT_PORT

    @property
    def name(self) -> str:
        return f"pod/{self.pod}"

    def call(self, method: str, path: str, body: dict | None, timeout: float) -> dict:
        parts = urlsplit(path)
        # the proxied path goes in as written: as a path parameter the client would quote its "/"
        resource = f"/api/v1/namespaces/{self.namespace}/pods/{self.pod}:{self.port}/proxy{parts.path}"
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = self.api_client.param_serialize(
            method=method, resource_path=resource, query_params=parse_qsl(parts.query), header_params=headers,
            body=body, auth_settings=["BearerToken"])
        try:
            response = self.api_client.call_api(*request, _request_timeout=timeout)
            response.read()
        except (ApiException, Urllib3Error, OSError) as e:
            raise AgentCallError(f"{self.name}: {method} {path}: {e}") from None
        if response.status >= 400:
            raise AgentCallError(f"{self.name}: {method} {path}: {response.status} "
                                 f"{response.data.decode(errors='replace')[:300]}")
        try:
            return json.loads(response.data or b"{}")
        except ValueError as e:
            raise AgentCallError(f"{self.name}: {method} {path}: not JSON: {e}") from None


class GeneratorJob:
    """The agents' Job in the namespace of ``options``: apply, wait, links, delete (through
    ``cluster.Kube``, the backend's own calls)."""

    def __init__(self, api_client: Any, options: ClusterOptions, job: generators.GeneratorJob, *,
                 ready_timeout_s: float = 600.0, poll_s: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self.api_client = api_client
        self.kube = Kube(api_client)
        self.options = options
        self.job = job
        self.ready_timeout_s = ready_timeout_s
        self.poll_s = poll_s
        self._sleep = sleep
        self._clock = clock

    @property
    def namespace(self) -> str:
        return self.options.namespace

    def _call(self, doing: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except ApiException as e:
            raise api_error(e, doing) from None
        except Urllib3Error as e:
            raise DeployError(f"{doing}: the API server is unreachable: {e}") from None

    def apply(self) -> None:
        self._call(f"applying Job/{generators.JOB_NAME}", self.kube.apply,
                   generators.job(self.job, self.options), self.namespace)

    def links(self, *, wait: bool = True) -> list[PodProxyAgent]:
        """One link per index, each to a running, ready pod (waiting for them up to
        ``ready_timeout_s`` when ``wait``); DeployError when they do not come."""
        deadline = self._clock() + self.ready_timeout_s
        while True:
            ready = self._ready_pods()
            if len(ready) == self.job.count:
                return [PodProxyAgent(self.api_client, self.namespace, ready[i]) for i in range(self.job.count)]
            if not wait or self._clock() > deadline:
                missing = sorted(set(range(self.job.count)) - set(ready))
                raise DeployError(f"generator agents {missing} of Job/{generators.JOB_NAME} are not running and "
                                  f"ready after {self.ready_timeout_s:g} s (kubectl -n {self.namespace} describe "
                                  f"job {generators.JOB_NAME})")
            self._sleep(self.poll_s)

    def _ready_pods(self) -> dict[int, str]:
        pods = self._call("listing the generator pods", self.kube.pods, self.namespace,
                          {JOB_NAME_LABEL: generators.JOB_NAME})
        out: dict[int, str] = {}
        for pod in pods:
            meta, status = pod.get("metadata", {}), pod.get("status", {})
            index = meta.get("labels", {}).get(INDEX_LABEL)
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))
            if index is not None and status.get("phase") == "Running" and ready and not meta.get("deletionTimestamp"):
                out[int(index)] = meta["name"]
        return out

    def delete(self, timeout_s: float = 300.0) -> None:
        """Deletes the Job and its pods (foreground), and waits until it is gone: a Job
        applied again while the old one is being deleted would get no new pods."""
        what = f"Job/{generators.JOB_NAME}"
        if not self._call(f"deleting {what}", self.kube.delete, "Job", generators.JOB_NAME, self.namespace):
            return
        deadline = self._clock() + timeout_s
        while self._clock() < deadline:
            if self._call(f"waiting for {what} to go", self.kube.read, "Job", generators.JOB_NAME,
                          self.namespace) is None:
                return
            self._sleep(self.poll_s)
        raise DeployError(f"{what} was still there {timeout_s:g} s after its deletion")
