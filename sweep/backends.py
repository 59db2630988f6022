"""The backend a sweep runs on: CPU-pinned local servers, or a Kubernetes cluster."""

from __future__ import annotations

from pathlib import Path

from deploy.spec import Sweep
from deploy.target import Backend
from sweep.loop import SweepError

KINDS = ("local", "k8s")


def backend_kind(sweep: Sweep, asked: str | None) -> str:
    """``local`` or ``k8s``: the spec's backend; ``asked`` (the --backend flag) must agree."""
    kind = "k8s" if sweep.backend == "cluster" else "local"
    if asked and asked != kind:
        hint = ("a cluster spec such as deploy/sweeps/seed-gke-e2.yaml" if asked == "k8s"
                else "a local spec such as deploy/sweeps/local.yaml")
        raise SweepError(f"{sweep.source}: this spec is for the {sweep.backend} backend, not {asked}; "
                         f"use {hint}")
    return kind


def make_backend(sweep: Sweep, kind: str, *, models: Path, workdir: Path,
                 kube_context: str | None = None, endpoint: str = "loadbalancer",
                 allow_tags: bool = False) -> Backend:
    """A backend for ``sweep``'s Configs. Raises SweepError when the cluster's kubeconfig
    cannot be loaded, or a Config cannot be measured through ``endpoint`` (before anything
    is deployed)."""
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
