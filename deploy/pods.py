"""Pods reached through the API server's pod proxy
(``/api/v1/namespaces/NS/pods/NAME:PORT/proxy/PATH``): the generator agents' control API
(``deploy.agents``) and each server replica's own endpoints, its Prometheus metrics and
its model status (``deploy.cluster``). RBAC: ``pods/proxy`` get and create.

The calls go through the official client's own request machinery
(``ApiClient.param_serialize`` / ``call_api``: the kubeconfig's bearer token and TLS):
the generated ``connect_*_pod_proxy`` methods take no request body, and the agents'
control API needs one.
"""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from deploy.target import DeployError, Replica


class ProxyError(DeployError):
    """A call through the pod proxy failed (message names the pod, the call and why)."""


def call(api_client: Any, namespace: str, pod: str, port: int, method: str, path: str, *,
         body: dict | None = None, accept: str = "application/json", timeout: float) -> bytes:
    """The body the pod answered ``method path`` with (``body`` sent as JSON); ProxyError
    when the call fails or the answer is an error."""
    parts = urlsplit(path)
    # the proxied path goes in as written: as a path parameter the client would quote its "/"
    resource = f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{parts.path}"
    headers = {"Accept": accept}
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = api_client.param_serialize(
        method=method, resource_path=resource, query_params=parse_qsl(parts.query), header_params=headers,
        body=body, auth_settings=["BearerToken"])
    what = f"pod/{pod}: {method} {path}"
    try:
        response = api_client.call_api(*request, _request_timeout=timeout)
        response.read()
    except (ApiException, Urllib3Error, OSError) as e:
        raise ProxyError(f"{what}: {e}") from None
    if response.status >= 400:
        raise ProxyError(f"{what}: {response.status} {response.data.decode(errors='replace')[:300]}")
    return response.data or b""


def is_ready(pod: dict[str, Any]) -> bool:
    """Running, Ready and not being deleted."""
    meta, status = pod.get("metadata", {}), pod.get("status", {})
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))
    return status.get("phase") == "Running" and ready and not meta.get("deletionTimestamp")


def replica(api_client: Any, namespace: str, pod: str, port: int) -> Replica:
    """Server pod ``pod``'s port ``port`` (its REST API) as a Replica."""
    def get(path: str, timeout_s: float) -> bytes:
        return call(api_client, namespace, pod, port, "GET", path, accept="*/*", timeout=timeout_s)

    return Replica(f"pod/{pod}", functools.partial(get))
