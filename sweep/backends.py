"""The backend a sweep runs on: CPU-pinned local servers, or a Kubernetes cluster (with or
without in-cluster generator agents)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy.spec import Sweep
from deploy.target import Backend
from sweep.loop import SweepError

KINDS = ("local", "k8s")
DEFAULT_ENDPOINT = "loadbalancer"


def backend_kind(sweep: Sweep, asked: str | None) -> str:
    """``local`` or ``k8s``: the spec's backend; ``asked`` (the --backend flag) must agree."""
    kind = "k8s" if sweep.backend == "cluster" else "local"
    if asked and asked != kind:
        hint = ("a cluster spec such as deploy/sweeps/seed-gke-e2.yaml" if asked == "k8s"
                else "a local spec such as deploy/sweeps/local.yaml")
        raise SweepError(f"{sweep.source}: this spec is for the {sweep.backend} backend, not {asked}; "
                         f"use {hint}")
    return kind


def check_generators(kind: str, generators: int, endpoint: str | None) -> str | None:
    """The endpoint the load goes to (None: the backend's default); SweepError when
    ``generators`` agents cannot run here. On the local backend the load is sent from this
    machine, on the cores the servers are pinned beside: agents there would be local
    processes on those cores, what ``--workers N`` already is."""
    from deploy.cluster import IN_CLUSTER

    if not generators:
        if endpoint == IN_CLUSTER:
            raise SweepError(f"--endpoint {IN_CLUSTER}: only in-cluster generator agents reach it; add --generators N")
        return endpoint
    if kind != "k8s":
        raise SweepError(f"--generators {generators}: generator agents run inside a cluster (the k8s backend); "
                         "the local backend sends from this machine: use --workers N to split the schedule over "
                         "N processes here")
    if endpoint not in (None, IN_CLUSTER):
        raise SweepError(f"--generators {generators} and --endpoint {endpoint}: the agents send to every replica "
                         "from inside the cluster, through no endpoint of this machine; drop --endpoint")
    return IN_CLUSTER


def make_backend(sweep: Sweep, kind: str, *, models: Path, workdir: Path,
                 kube_context: str | None = None, endpoint: str | None = None,
                 allow_tags: bool = False) -> Backend:
    """A backend for ``sweep``'s Configs. Raises SweepError when the cluster's kubeconfig
    cannot be loaded, or a Config cannot be measured through ``endpoint`` (before anything
    is deployed)."""
    endpoint = endpoint or DEFAULT_ENDPOINT
    if kind == "local":
        from deploy.local import LocalBackend

        # TF Serving's --model_base_path is the model's own directory (holding version dirs).
        return LocalBackend(model_base_path=models / sweep.configs[0].serving.model_name, workdir=workdir)
    if kind != "k8s":
        raise SweepError(f"unknown backend {kind!r}: use one of {', '.join(KINDS)}")
    from kubernetes import config as kube_config

    from deploy.cluster import ClusterBackend, endpoint_refusal

    refused = [why for why in (endpoint_refusal(endpoint, c) for c in sweep.configs) if why]
    if refused:
        more = f" (and {len(refused) - 1} more Configs)" if len(refused) > 1 else ""
        raise SweepError(refused[0] + more)
    try:
        api = kube_config.new_client_from_config(context=kube_context)
    except Exception as err:  # kubeconfig missing or context unknown: say so plainly
        raise SweepError(f"cannot load kubeconfig (context {kube_context or 'current'}): {err}") from None
    return ClusterBackend(api, options=sweep.cluster, work_dir=workdir, endpoint=endpoint, allow_tags=allow_tags)


def generator_spec(sweep: Sweep, count: int, image: str | None, *, allow_tags: bool,
                   recorded: dict | None = None) -> Any:
    """The agents (``deploy.generators.GeneratorJob``): ``count`` of ``image``, else of a
    rerun's recorded image (refused when it came from the image lock and the lock now
    holds another), else of the lock's ``servesweep-loadgen``; refused (SweepError) unless
    pinned by digest (or ``allow_tags``), before the cluster is touched."""
    from deploy import generators, spec
    from deploy.render import RenderError

    recorded = recorded or {}
    lock = spec.lock_file(sweep)
    try:
        if image is None and recorded.get("image") and recorded.get("locked"):
            ref, locked = generators.rerun_image(recorded["image"], lock), True
        else:
            given = image or recorded.get("image")
            ref, locked = generators.generator_image(lock, given, allow_tags=allow_tags), given is None
        return generators.GeneratorJob(count=count, image=ref, sweep_id=sweep.id, locked=locked)
    except RenderError as err:
        raise SweepError(str(err)) from None


def generator_job(sweep: Sweep, backend: Any, agents_spec: Any) -> Any:
    """The agents' Job (``deploy.agents.GeneratorJob``) on ``backend``'s cluster."""
    from deploy import agents

    return agents.GeneratorJob(backend.kube.api_client, sweep.cluster, agents_spec)
