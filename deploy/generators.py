"""The in-cluster load generators' manifests: an Indexed Job of agents and the RBAC a sweep needs.

A cluster sweep measures the Service from inside the cluster: ``count`` generator agents
(``//loadgen:agent``, one pod each) run as a Job with ``completionMode: Indexed``, so each
pod knows its index (``JOB_COMPLETION_INDEX``, set by Kubernetes) and sends every
``count``-th arrival of the common schedule; a pod that dies is replaced with the same
index. The pods are Guaranteed (requests = limits, whole CPUs), placed in the spec's
``cluster.generator_pool`` and never on a node that runs a server pod (anti-affinity to
the base Deployment's pod labels), with the restricted Pod Security profile and no API
token: the sweep drives them through the API server's pod proxy.

The agents send to the server pods through ``replicas_service``, a headless Service
whose cluster DNS name (``in_cluster_bases``) resolves to every ready server pod: each
agent sends every replica its turn (``loadgen.resolve``), where a ClusterIP Service would
pick a pod per connection at random.

``rbac`` is what the sweep itself needs in its namespace and nothing more: the objects it
applies and deletes (``deploy.cluster``'s kinds and this Job), the pods it lists, the
pod proxy it drives agents and scrapes metrics through, and port-forward for a
one-replica smoke test. Output is a pure function of its inputs (same bytes each time).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from deploy.configs import ClusterOptions
from deploy.render import BASE_DIR, GRPC_PORT, HEADER, REST_PORT, RenderError
from formats.agent import AGENT_PORT, AGENT_UID, COUNT_ENV, IMAGE_LOCK_NAME, READY_PATH
from serving.image import lock as image_lock

JOB_NAME = "servesweep-generators"
AGENT_CONTAINER = "agent"
AGENT_LABELS = {"app.kubernetes.io/name": "servesweep-generator", "app.kubernetes.io/part-of": "servesweep"}
AGENT_ACCOUNT = "servesweep-generator"  # no Role: an agent calls no API
CONTROLLER_ACCOUNT = "servesweep-controller"  # the sweep's identity in the namespace
CONTROLLER_ROLE = "servesweep-sweep"
REPLICAS_SERVICE = "tfs-server-replicas"  # headless: its DNS name resolves to every ready server pod
CLUSTER_DOMAIN = "cluster.local"  # the cluster's DNS domain (kubelet --cluster-domain; GKE's default)
LOCK_NAME = IMAGE_LOCK_NAME  # the generator image's key in deploy/images.lock.json (//loadgen:image)
RUN_AS = AGENT_UID
TTL_AFTER_FINISHED_S = 600  # a Job the sweep could not delete goes away by itself

# what the sweep does with each resource (deploy.cluster applies with server-side apply,
# a PATCH, which needs create too when the object does not exist yet, as after every
# teardown; it reads, deletes and lists; the Job is created once and deleted at the end)
RULES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("", ("configmaps", "services"), ("get", "create", "patch", "delete")),
    ("apps", ("deployments",), ("get", "create", "patch", "delete")),
    ("policy", ("poddisruptionbudgets",), ("get", "create", "patch", "delete")),
    ("batch", ("jobs",), ("get", "create", "patch", "delete")),
    ("", ("pods",), ("get", "list", "watch")),
    # the agents' control API (GET, POST and DELETE /runs/ID: the proxy's verbs are the
    # HTTP method's), each replica's /metrics and model status
    ("", ("pods/proxy",), ("get", "create", "delete")),
    ("", ("pods/portforward",), ("create",)),  # --endpoint port-forward (a 1-replica smoke test)
)


@dataclasses.dataclass(frozen=True)
class GeneratorJob:
    """The generator agents of one sweep."""

    count: int
    image: str  # REPO@sha256:... (a tag only when allowed)
    sweep_id: str
    cpu: int = 2  # per agent: request = limit
    memory_gb: float = 2.0
    locked: bool = False  # the image is the lock's LOCK_NAME entry (a rerun then holds the lock to it)

    def __post_init__(self) -> None:
        if self.count < 1 or self.cpu < 1 or not self.memory_gb > 0:
            raise RenderError("generators: need count >= 1, cpu >= 1 (whole CPUs) and memory > 0")


def generator_image(lock_file: Path | None, ref: str | None, *, allow_tags: bool) -> str:
    """The agents' image: ``ref`` when given, else the lock's ``LOCK_NAME`` entry; a
    reference not pinned by digest only with ``allow_tags``."""
    if ref is None:
        if lock_file is None:
            raise RenderError("generators: no image lock to read the generator image from; pass its reference")
        try:
            return image_lock.resolve(image_lock.read_lock(lock_file), LOCK_NAME, lock_path=str(lock_file)).ref
        except image_lock.ImageLockError:
            raise RenderError(f"generators: no {LOCK_NAME!r} image is locked in {lock_file}: build and push "
                              "it with `bazel run //loadgen:image -- --repository REGISTRY/REPO`, which "
                              "records its digest, or pass --generator-image REPO@sha256:...") from None
    if not image_lock.is_pinned(ref) and not allow_tags:
        raise RenderError(f"generator image {ref!r} is not pinned by digest: use REPO@sha256:..., "
                          "or pass --allow-tags (a tag can move between runs)")
    return ref


def rerun_image(recorded_ref: str, lock_file: Path) -> str:
    """For ``--rerun`` of a sweep whose agents ran ``recorded_ref`` from the lock: that image,
    when the lock still holds it; RenderError (saying both digests) when it changed."""
    try:
        return image_lock.unchanged(image_lock.read_lock(lock_file), LOCK_NAME, recorded_ref,
                                    lock_path=str(lock_file)).ref
    except image_lock.ImageLockError as e:
        raise RenderError(f"generators: {e}") from None


def server_pod_labels() -> dict[str, str]:
    """The server pods' labels the base Deployment selects on (its anti-affinity too)."""
    deployment = yaml.safe_load((BASE_DIR / "deployment.yaml").read_text())
    return dict(deployment["spec"]["selector"]["matchLabels"])


def _meta(name: str, options: ClusterOptions, labels: Mapping[str, str] = AGENT_LABELS) -> dict[str, Any]:
    return {"name": name, "namespace": options.namespace, "labels": dict(labels)}


def job(spec: GeneratorJob, options: ClusterOptions) -> dict[str, Any]:
    """The Indexed Job of ``spec.count`` agents."""
    labels = {**AGENT_LABELS, "servesweep.io/sweep": spec.sweep_id}
    memory = f"{round(spec.memory_gb * 1024)}Mi"
    resources = {"cpu": str(spec.cpu), "memory": memory}
    pod: dict[str, Any] = {
        "restartPolicy": "Never",  # a failed agent is replaced by a new pod with its index
        "serviceAccountName": AGENT_ACCOUNT,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": server_pod_labels()}}]}},
        "containers": [{
            "name": AGENT_CONTAINER,
            "image": spec.image,
            "imagePullPolicy": "IfNotPresent",
            "args": ["--port", str(AGENT_PORT)],  # the image's entrypoint is the agent (//loadgen:agent)
            "env": [{"name": COUNT_ENV, "value": str(spec.count)}],
            "ports": [{"name": "control", "containerPort": AGENT_PORT}],
            "readinessProbe": {"httpGet": {"path": READY_PATH, "port": "control"}, "periodSeconds": 2},
            "resources": {"requests": dict(resources), "limits": dict(resources)},
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "privileged": False, "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [{"name": "work", "mountPath": "/tmp"}],
        }],
        "volumes": [{"name": "work", "emptyDir": {"sizeLimit": "1Gi"}}],
    }
    if options.generator_pool.node_selector:
        pod["nodeSelector"] = dict(options.generator_pool.node_selector)
    if options.generator_pool.tolerations:
        pod["tolerations"] = [dict(t) for t in options.generator_pool.tolerations]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(JOB_NAME, options, labels),
        "spec": {
            "completionMode": "Indexed",
            "completions": spec.count,
            "parallelism": spec.count,
            "backoffLimit": 3 * spec.count,
            "ttlSecondsAfterFinished": TTL_AFTER_FINISHED_S,
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def replicas_service(options: ClusterOptions) -> dict[str, Any]:
    """The headless Service the agents send to: no cluster IP, so its DNS name gives the
    address of every ready server pod (whichever Config is deployed) and no proxy balances
    their connections."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(REPLICAS_SERVICE, options, {"app.kubernetes.io/part-of": "servesweep"}),
        "spec": {"clusterIP": "None", "selector": server_pod_labels(),
                 "ports": [{"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc"},
                           {"name": "rest", "port": REST_PORT, "targetPort": "rest"}]},
    }


def in_cluster_bases(options: ClusterOptions) -> tuple[str, str]:
    """The REST base URL and gRPC base the agents send to: ``replicas_service``'s DNS name
    and the server pods' ports."""
    host = f"{REPLICAS_SERVICE}.{options.namespace}.svc.{CLUSTER_DOMAIN}"
    return f"http://{host}:{REST_PORT}", f"grpc://{host}:{GRPC_PORT}"


def rbac(options: ClusterOptions) -> list[dict[str, Any]]:
    """The agents' ServiceAccount (no token, no Role), and the sweep's ServiceAccount with
    the Role and RoleBinding that grant it ``RULES`` in the namespace."""
    labels = {"app.kubernetes.io/part-of": "servesweep"}
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": CONTROLLER_ROLE}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(AGENT_ACCOUNT, options),
         "automountServiceAccountToken": False},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(CONTROLLER_ACCOUNT, options, labels)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": _meta(CONTROLLER_ROLE, options, labels),
         "rules": [{"apiGroups": [group], "resources": list(resources), "verbs": list(verbs)}
                   for group, resources, verbs in RULES]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": _meta(CONTROLLER_ROLE, options, labels), "roleRef": role_ref,
         "subjects": [{"kind": "ServiceAccount", "name": CONTROLLER_ACCOUNT, "namespace": options.namespace}]},
    ]


def sweep_objects(spec: GeneratorJob, options: ClusterOptions) -> list[dict[str, Any]]:
    """What a sweep with generators applies once and deletes at its end: the headless
    Service and the Job."""
    return [replicas_service(options), job(spec, options)]


def manifests(spec: GeneratorJob, options: ClusterOptions) -> list[dict[str, Any]]:
    return [*rbac(options), *sweep_objects(spec, options)]


def render(spec: GeneratorJob, options: ClusterOptions, out_dir: Path) -> Path:
    """Writes ``out_dir/generators/rbac.yaml`` and ``job.yaml`` (the headless Service and
    the Job); returns the directory."""
    directory = Path(out_dir) / "generators"
    directory.mkdir(parents=True, exist_ok=True)
    dump = {"rbac.yaml": rbac(options), "job.yaml": sweep_objects(spec, options)}
    for name, objects in dump.items():
        text = HEADER + yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False, width=1000)
        (directory / name).write_text(text)
    return directory
