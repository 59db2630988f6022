"""The one interface both backends offer: deploy a Config, get a Target, tear it down."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

from deploy.spec import Config


class DeployError(RuntimeError):
    """A deployment could not be brought up or torn down; the message says why."""


@dataclasses.dataclass(frozen=True)
class Target:
    """Where to send load for one deployed Config.

    ``urls`` are the REST predict URLs (``.../v1/models/<name>:predict``), one per
    endpoint the load generator should spread requests over (one per replica locally,
    the Service on a cluster); they go into run.json's "targets". ``identity`` is the
    run.json "server" record (kind, version, argv, image_digest, ...).
    """

    urls: tuple[str, ...]
    identity: Mapping[str, Any]
    base_urls: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("a Target needs at least one URL")


class Backend(Protocol):
    """Deploys one Config at a time."""

    def deploy(self, config: Config) -> Target:
        """Brings ``config`` up, waits until its model answers, and returns where it is."""
        ...

    def teardown(self) -> None:
        """Removes whatever the last ``deploy`` started; safe to call twice."""
        ...


def predict_url(base_url: str, model_name: str) -> str:
    return f"{base_url.rstrip('/')}/v1/models/{model_name}:predict"


def status_url(base_url: str, model_name: str) -> str:
    return f"{base_url.rstrip('/')}/v1/models/{model_name}"
