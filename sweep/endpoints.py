"""Servers that are already running, measured as one Config (``//loadgen:capacity``).

An ``Endpoint`` is a set of TF Serving predict URLs (one per replica, or one Service)
that the search treats as a Config: the load is spread over its URLs, as the generator
does. ``ExternalBackend`` "deploys" it by handing back where it already is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

from deploy.target import Target
from formats.results import DEFAULT_PROTOCOL
from sweep.loop import SweepError

_PREDICT = re.compile(r"^(?P<base>https?://[^/]+)/v1/models/(?P<model>[^/:]+)(?P<rest>(/versions/\d+|/labels/[^/:]+)?):predict$")


@dataclasses.dataclass(frozen=True)
class Endpoint:
    urls: tuple[str, ...]
    label: str = ""

    def __post_init__(self) -> None:
        if not self.urls:
            raise SweepError("give at least one --target")
        for url in self.urls:
            if not _PREDICT.match(url):
                raise SweepError(f"--target {url}: use a TF Serving predict URL, "
                                 "http://HOST:PORT/v1/models/NAME[/versions/N]:predict")
        models = {_PREDICT.match(u).group("model") for u in self.urls}
        if len(models) > 1:
            raise SweepError(f"the targets name different models ({', '.join(sorted(models))}): one endpoint at a time")

    @property
    def id(self) -> str:
        return "e-" + hashlib.sha256("\n".join(self.urls).encode()).hexdigest()[:10]

    @property
    def protocol(self) -> str:
        return DEFAULT_PROTOCOL  # predict URLs: REST

    @property
    def name(self) -> str:
        return self.label or _PREDICT.match(self.urls[0]).group("model")

    def to_record(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "shape": None, "replicas": len(self.urls),
                "backend": "external", "targets": list(self.urls)}

    def target(self) -> Target:
        m = [_PREDICT.match(u) for u in self.urls]
        if any(x.group("rest") for x in m):  # versioned URLs: keep them as given
            return _Given(tuple(x.group("base") for x in m), m[0].group("model"),
                          {"kind": "external", "version": None, "argv": [], "image_digest": None}, self.urls)
        return Target(tuple(x.group("base") for x in m), m[0].group("model"),
                      {"kind": "external", "version": None, "argv": [], "image_digest": None})


@dataclasses.dataclass(frozen=True)
class _Given(Target):
    given: tuple[str, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        return self.given


class ExternalBackend:
    """Servers already running: nothing to deploy or tear down."""

    holds_many = True

    def deploy(self, config: Endpoint) -> Target:
        return config.target()

    def problems(self, config: Endpoint | None = None) -> list[str]:
        return []

    def teardown(self, config: Endpoint | None = None) -> None:
        return None
