"""The records a sweep spec expands into: NodeShape, Slo, ClusterOptions, Config, Sweep.

Import them from `deploy.spec` (which re-exports them) or from here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from formats.results import DEFAULT_PROTOCOL
from formats.slo import Slo
from serving.config import ServingConfig

__all__ = ["ClusterOptions", "Config", "GeneratorPool", "NodeShape", "Slo", "SpecError", "Sweep", "config_id"]


class SpecError(ValueError):
    """An invalid sweep spec; the message names the file, the field and the reason."""


@dataclasses.dataclass(frozen=True)
class NodeShape:
    """A node type and how many of it (one replica per node)."""

    name: str
    machine_type: str
    vcpu: int
    memory_gb: float
    nodes: int
    pricing: str
    node_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        return {
            "machine_type": self.machine_type,
            "vcpu": self.vcpu,
            "memory_gb": self.memory_gb,
            "nodes": self.nodes,
            "pricing": self.pricing,
        }


TOLERATION_KEYS = ("key", "operator", "value", "effect", "tolerationSeconds")


@dataclasses.dataclass(frozen=True)
class GeneratorPool:
    """Where in-cluster generator agents may run (``cluster.generator_pool``)."""

    node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def parse(cls, value: Any) -> GeneratorPool:
        """``cluster.generator_pool`` of a spec: ``node_selector`` (label: value) and
        ``tolerations`` (Kubernetes Toleration fields); ValueError naming the field."""
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise ValueError("generator_pool: must be a mapping with node_selector and/or tolerations")
        unknown = sorted(set(value) - {"node_selector", "tolerations"})
        if unknown:
            raise ValueError(f"generator_pool.{unknown[0]}: unknown field (node_selector, tolerations)")
        selector = value.get("node_selector") or {}
        if not isinstance(selector, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                         for k, v in selector.items()):
            raise ValueError("generator_pool.node_selector: must map label names to string values")
        tolerations = value.get("tolerations") or []
        if not isinstance(tolerations, list):
            raise ValueError("generator_pool.tolerations: must be a list")
        out = []
        for i, t in enumerate(tolerations):
            where = f"generator_pool.tolerations[{i}]"
            if not isinstance(t, Mapping) or not t:
                raise ValueError(f"{where}: must be a mapping of {', '.join(TOLERATION_KEYS)}")
            bad = sorted(set(t) - set(TOLERATION_KEYS))
            if bad:
                raise ValueError(f"{where}.{bad[0]}: unknown field ({', '.join(TOLERATION_KEYS)})")
            out.append(dict(t))
        return cls(node_selector=dict(selector), tolerations=tuple(out))


@dataclasses.dataclass(frozen=True)
class ClusterOptions:
    """Where and how cluster Configs are deployed (not part of a Config's identity)."""

    namespace: str = "servesweep"
    service_type: str = "ClusterIP"
    system_reserved_cpu: int = 1
    generator_pool: GeneratorPool = GeneratorPool()


@dataclasses.dataclass(frozen=True)
class Config:
    """One deployment to measure: shape x replicas x ServingConfig (+ image and load)."""

    id: str
    name: str
    shape: NodeShape
    replicas: int
    cpu: int  # per replica: CPU request = limit (whole CPUs)
    memory_gb: float  # per replica: memory request = limit
    serving: ServingConfig
    profile: Mapping[str, Any]
    backend: str = "local"
    image: str | None = None  # the server image reference (cluster backend)
    protocol: str = DEFAULT_PROTOCOL  # the API the load speaks (formats.results.PROTOCOLS)

    def to_record(self) -> dict[str, Any]:
        """The "config" record of run.json (docs/results-format.md)."""
        return {
            "id": self.id,
            "name": self.name,
            "shape": self.shape.to_record(),
            "replicas": self.replicas,
            "serving": self.serving.to_dict(),
            "resources": {"cpu": self.cpu, "memory_gb": self.memory_gb},
            "image": self.image,
            "backend": self.backend,
            "protocol": self.protocol,
        }


@dataclasses.dataclass(frozen=True)
class Sweep:
    name: str
    backend: str
    slo: Slo
    configs: tuple[Config, ...]
    spec: Mapping[str, Any]  # as given
    cluster: ClusterOptions = ClusterOptions()
    image_note: str = ""  # why the image is not pinned, if it is not
    source: str = ""
    # the spec's `load:` section as given: the generator's options (loadgen.options reads
    # them; deploy does not know them), not part of any Config's identity
    load: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def id(self) -> str:
        return "s-" + _digest({"name": self.name, "configs": [c.id for c in self.configs], "slo": self.slo.to_dict()})

    def config(self, key: str) -> Config:
        """A Config by id or name."""
        for c in self.configs:
            if key in (c.id, c.name):
                return c
        raise KeyError(key)


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def config_id(content: Mapping[str, Any]) -> str:
    """The stable, content-derived id of a Config."""
    return "c-" + _digest(content)
