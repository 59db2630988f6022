"""In-cluster generator agents: their Job brought up and down, and each reached through the
API server's pod proxy (``deploy.generators`` renders the Job).

``PodProxyAgent`` is a link to one agent pod in the shape ``loadgen.remote`` drives
(``name``, ``call(method, path, body, timeout) -> dict``), through the pod proxy
(``deploy.pods``).

``GeneratorJob`` applies the headless Service the agents send to and the Job, waits until
every index has a running, ready pod, and
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

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from deploy import generators, pods
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
        try:
            data = pods.call(self.api_client, self.namespace, self.pod, self.port, method, path, body=body,
                             timeout=timeout)
        except pods.ProxyError as e:
            raise AgentCallError(str(e)) from None
        try:
            return json.loads(data or b"{}")
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
        """Applies the headless Service the agents send to, then the Job."""
        for obj in generators.sweep_objects(self.job, self.options):
            self._call(f"applying {obj['kind']}/{obj['metadata']['name']}", self.kube.apply, obj, self.namespace)

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
        found = self._call("listing the generator pods", self.kube.pods, self.namespace,
                           {JOB_NAME_LABEL: generators.JOB_NAME})
        out: dict[int, str] = {}
        for pod in found:
            index = pod.get("metadata", {}).get("labels", {}).get(INDEX_LABEL)
            if index is not None and pods.is_ready(pod):
                out[int(index)] = pod["metadata"]["name"]
        return out

    def delete(self, timeout_s: float = 300.0) -> None:
        """Deletes the headless Service, and the Job and its pods (foreground), and waits
        until the Job is gone: a Job applied again while the old one is being deleted would
        get no new pods."""
        service = generators.REPLICAS_SERVICE
        self._call(f"deleting Service/{service}", self.kube.delete, "Service", service, self.namespace)
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
