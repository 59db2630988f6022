"""Sweep specs: a versioned YAML file expanding into Configs with stable ids.

A spec names node shapes, ServingConfig fields, named batching parameter sets, a load
profile and an SLO; ``matrix`` lists the fields to vary and ``exclude`` drops
combinations.  Each point becomes a frozen `Config` whose id is a hash of everything
that defines the deployment and its load (image digest included).  Bad specs fail with
`SpecError` naming the field and the reason.  See deploy/README.md for the format.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from deploy.configs import ClusterOptions, Config, GeneratorPool, NodeShape, Slo, SpecError, Sweep, config_id
from formats import units
from formats.results import DEFAULT_PROTOCOL, PROTOCOLS
from formats.slo import SloError
from serving.config import ServingConfig
from serving.image import lock as image_lock

__all__ = [
    "ClusterOptions",
    "Config",
    "NodeShape",
    "Slo",
    "SpecError",
    "Sweep",
    "config_id",
    "config_name",
    "load_sweep",
    "parse_sweep",
]

SCHEMA = "servesweep.sweep-spec/1"
BACKENDS = ("local", "cluster")
PROFILE_KINDS = ("ramp", "constant", "steps")
PROFILE_FIELDS = ("kind", "arrivals", "seed", "duration_s", "rate", "users", "spawn_rate", "per_user_rps", "steps")
TOP_LEVEL = (
    "schema",
    "name",
    "description",
    "backend",
    "image",
    "cluster",
    "slo",
    "profile",
    "load",
    "shapes",
    "serving",
    "batching",
    "matrix",
    "exclude",
)
SHAPE_FIELDS = (
    "machine_type",
    "vcpu",
    "memory_gb",
    "nodes",
    "pricing",
    "node_labels",
    "replica_cpu",
    "replica_memory_gb",
)
# Matrix keys that are not ServingConfig fields.
SPECIAL_KEYS = ("shape", "replicas", "batching", "protocol")
BATCHING_OFF = "off"
DEFAULT_LOCK = "../images.lock.json"  # image.lock, relative to the spec
# Short forms for readable Config names.
NAME_ABBREV = {
    "inter_op": "inter",
    "intra_op": "intra",
    "tensorflow_inter_op_parallelism": "inter",
    "tensorflow_intra_op_parallelism": "intra",
}
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


# --- loading -----------------------------------------------------------------------------


def load_sweep(path: str | Path, *, lock_path: str | Path | None = None) -> Sweep:
    """Reads and expands a sweep spec file."""
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except OSError as e:
        raise SpecError(f"{p}: cannot read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{p}: not valid YAML ({e})") from None
    return parse_sweep(doc, source=str(p), base_dir=p.parent, lock_path=lock_path)


def _lock_file(base_dir: Path, image: Mapping[str, Any], lock_path: str | Path | None) -> Path:
    return Path(os.path.normpath(Path(lock_path) if lock_path else base_dir / image.get("lock", DEFAULT_LOCK)))


def lock_file(sweep: Sweep, lock_path: str | Path | None = None) -> Path:
    """The image lock a loaded sweep reads (``lock_path`` when given, else its image.lock)."""
    image = sweep.spec.get("image")
    return _lock_file(Path(sweep.source).parent, image if isinstance(image, Mapping) else {}, lock_path)


def parse_sweep(
    doc: Any, *, source: str = "<spec>", base_dir: Path = Path("."), lock_path: str | Path | None = None
) -> Sweep:
    """Validates a parsed spec and expands it into Configs."""
    return _Parser(source, Path(base_dir), lock_path).parse(doc)


class _Parser:
    def __init__(self, source: str, base_dir: Path, lock_path: str | Path | None) -> None:
        self.source = source
        self.base_dir = base_dir
        self.lock_path = lock_path

    def fail(self, field: str, reason: str) -> SpecError:
        return SpecError(f"{self.source}: {field}: {reason}")

    def parse(self, doc: Any) -> Sweep:
        if not isinstance(doc, dict):
            raise SpecError(f"{self.source}: a spec is a YAML mapping, got {type(doc).__name__}")
        if doc.get("schema") != SCHEMA:
            raise self.fail("schema", f"must be {SCHEMA!r}, got {doc.get('schema')!r}")
        unknown = sorted(set(doc) - set(TOP_LEVEL))
        if unknown:
            raise self.fail(unknown[0], f"unknown field (known: {', '.join(TOP_LEVEL)})")
        name = doc.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise self.fail("name", "must be lower-case letters, digits and dashes")
        backend = doc.get("backend", "local")
        if backend not in BACKENDS:
            raise self.fail("backend", f"must be one of {', '.join(BACKENDS)}, got {backend!r}")
        cluster = self.cluster(doc.get("cluster", {}), backend)
        slo = self.slo(doc.get("slo", {}))
        profile = self.profile(doc.get("profile"))
        load = self.mapping(doc.get("load", {}), "load")  # the generator's options: the sweep reads them
        shapes = self.shapes(doc.get("shapes"), backend, cluster)
        base_serving = self.mapping(doc.get("serving", {}), "serving")
        batchings = self.batchings(doc.get("batching", {}))
        image, note = self.image(doc.get("image"), backend)
        matrix = self.matrix(doc.get("matrix", {}), shapes, batchings)
        points = self.expand(matrix, doc.get("exclude", []))
        configs = []
        for point in points:
            configs.append(self.config(point, matrix, shapes, base_serving, batchings, profile, backend, image))
        seen: dict[str, str] = {}
        for c in configs:
            if c.name in seen:
                raise self.fail("matrix", f"two configurations are both named {c.name!r}; vary fewer fields")
            seen[c.name] = c.id
        if len(set(seen.values())) != len(configs):
            raise self.fail("matrix", "two points of the matrix are the same configuration")
        return Sweep(
            name=name,
            backend=backend,
            slo=slo,
            configs=tuple(configs),
            spec=doc,
            cluster=cluster,
            image_note=note,
            source=self.source,
            load=load,
        )

    # --- sections ------------------------------------------------------------------------

    def mapping(self, value: Any, field: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(field, f"must be a mapping, got {type(value).__name__}")
        return dict(value)

    def positive_int(self, value: Any, field: str, minimum: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(field, f"must be an integer >= {minimum}, got {value!r}")
        return value

    def positive_number(self, value: Any, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise self.fail(field, f"must be a number > 0, got {value!r}")
        return float(value)

    def cluster(self, value: Any, backend: str) -> ClusterOptions:
        d = self.mapping(value, "cluster")
        unknown = sorted(set(d) - {"namespace", "service_type", "system_reserved_cpu", "generator_pool"})
        if unknown:
            raise self.fail(f"cluster.{unknown[0]}", "unknown field")
        ns = d.get("namespace", "servesweep")
        if not isinstance(ns, str) or not _NAME_RE.match(ns):
            raise self.fail("cluster.namespace", f"not a valid namespace name: {ns!r}")
        svc = d.get("service_type", "ClusterIP")
        if svc not in ("ClusterIP", "LoadBalancer", "NodePort"):
            raise self.fail("cluster.service_type", f"must be ClusterIP, LoadBalancer or NodePort, got {svc!r}")
        reserved = d.get("system_reserved_cpu", 1 if backend == "cluster" else 0)
        reserved = self.positive_int(reserved, "cluster.system_reserved_cpu", minimum=0)
        try:
            pool = GeneratorPool.parse(d.get("generator_pool"))
        except ValueError as e:
            field, _, why = str(e).partition(": ")
            raise self.fail(f"cluster.{field}", why) from None
        return ClusterOptions(namespace=ns, service_type=svc, system_reserved_cpu=reserved, generator_pool=pool)

    def slo(self, value: Any) -> Slo:
        """The one SLO record (formats.slo): what the report would refuse is refused here,
        before anything is deployed."""
        try:
            return Slo.from_dict(self.mapping(value, "slo"))
        except SloError as e:
            raise self.fail(f"slo.{e.field}", e.reason) from None

    def duration(self, value: Any, field: str) -> float:
        """formats.units' grammar, as every flag uses it (a bare number is seconds)."""
        try:
            return units.parse_duration(value, positive=True)
        except units.UnitError as e:
            raise self.fail(field, str(e)) from None

    def profile(self, value: Any) -> dict[str, Any]:
        if value is None:
            raise self.fail("profile", "missing: every sweep needs a load profile")
        d = self.mapping(value, "profile")
        if "duration" in d:
            d["duration_s"] = self.duration(d.pop("duration"), "profile.duration")
        unknown = sorted(set(d) - set(PROFILE_FIELDS))
        if unknown:
            raise self.fail(f"profile.{unknown[0]}", f"unknown field (known: duration, {', '.join(PROFILE_FIELDS)})")
        out: dict[str, Any] = dict.fromkeys(PROFILE_FIELDS)
        out.update(arrivals="uniform", seed=0)
        out.update(d)
        if out["kind"] not in PROFILE_KINDS:
            raise self.fail("profile.kind", f"must be one of {', '.join(PROFILE_KINDS)}, got {out['kind']!r}")
        if out["arrivals"] not in ("uniform", "poisson"):
            raise self.fail("profile.arrivals", f"must be uniform or poisson, got {out['arrivals']!r}")
        out["seed"] = self.positive_int(out["seed"], "profile.seed", minimum=0)
        out["duration_s"] = self.duration(out["duration_s"], "profile.duration_s")
        need = {"constant": ("rate",), "ramp": ("users", "spawn_rate", "per_user_rps"), "steps": ("steps",)}
        for key in need[out["kind"]]:
            if out[key] is None:
                raise self.fail(f"profile.{key}", f"required by a {out['kind']} profile")
        for key in ("rate", "spawn_rate", "per_user_rps"):
            if out[key] is not None:
                out[key] = self.positive_number(out[key], f"profile.{key}")
        if out["users"] is not None:
            out["users"] = self.positive_int(out["users"], "profile.users")
        if out["steps"] is not None:
            steps = out["steps"]
            if not isinstance(steps, list) or not steps:
                raise self.fail("profile.steps", "must be a list of [rate, duration] pairs")
            norm = []
            for i, step in enumerate(steps):
                if not isinstance(step, (list, tuple)) or len(step) != 2:
                    raise self.fail(f"profile.steps[{i}]", f"must be [rate, duration], got {step!r}")
                norm.append(
                    [
                        self.positive_number(step[0], f"profile.steps[{i}]"),
                        self.duration(step[1], f"profile.steps[{i}]"),
                    ]
                )
            out["steps"] = norm
        return out

    def shapes(self, value: Any, backend: str, cluster: ClusterOptions) -> dict[str, tuple[NodeShape, int, float]]:
        d = self.mapping(value, "shapes")
        if not d:
            raise self.fail("shapes", "at least one node shape is needed")
        out = {}
        for name, raw in d.items():
            f = f"shapes.{name}"
            if not isinstance(name, str) or not _NAME_RE.match(name):
                raise self.fail(f, "a shape name is lower-case letters, digits and dashes")
            s = self.mapping(raw, f)
            unknown = sorted(set(s) - set(SHAPE_FIELDS))
            if unknown:
                raise self.fail(f"{f}.{unknown[0]}", f"unknown field (known: {', '.join(SHAPE_FIELDS)})")
            machine = s.get("machine_type", "local" if backend == "local" else None)
            if not isinstance(machine, str) or not machine:
                raise self.fail(f"{f}.machine_type", "required (e.g. e2-custom-8-16384)")
            vcpu = self.positive_int(s.get("vcpu"), f"{f}.vcpu")
            memory = self.positive_number(s.get("memory_gb", 1.0 if backend == "local" else None), f"{f}.memory_gb")
            nodes = self.positive_int(s.get("nodes", 1), f"{f}.nodes")
            pricing = s.get("pricing", "local" if backend == "local" else machine.rsplit("-", 2)[0])
            if not isinstance(pricing, str) or not pricing:
                raise self.fail(f"{f}.pricing", "must be a non-empty string (the cost table's row family)")
            default_labels = {} if backend == "local" else {"node.kubernetes.io/instance-type": machine}
            labels = self.mapping(s.get("node_labels", default_labels), f"{f}.node_labels")
            for k, v in labels.items():
                if not isinstance(k, str) or not isinstance(v, str):
                    raise self.fail(f"{f}.node_labels", f"labels are strings, got {k!r}: {v!r}")
            cpu = s.get("replica_cpu", vcpu - cluster.system_reserved_cpu)
            if isinstance(cpu, int) and not isinstance(cpu, bool) and cpu < 1:
                raise self.fail(
                    f"{f}.replica_cpu",
                    f"{vcpu} vCPU minus {cluster.system_reserved_cpu} reserved leaves no whole CPU for the server",
                )
            cpu = self.positive_int(cpu, f"{f}.replica_cpu")
            if cpu > vcpu:
                raise self.fail(f"{f}.replica_cpu", f"{cpu} CPUs do not fit a {vcpu}-vCPU node")
            mem = self.positive_number(
                s.get("replica_memory_gb", memory / 2 if backend == "cluster" else memory), f"{f}.replica_memory_gb"
            )
            if mem > memory:
                raise self.fail(f"{f}.replica_memory_gb", f"{mem} GB does not fit a {memory} GB node")
            shape = NodeShape(name, machine, vcpu, memory, nodes, pricing, dict(sorted(labels.items())))
            out[name] = (shape, cpu, mem)
        return out

    def batchings(self, value: Any) -> dict[str, dict[str, Any] | None]:
        d = self.mapping(value, "batching")
        out: dict[str, dict[str, Any] | None] = {BATCHING_OFF: None}
        for name, params in d.items():
            if name == BATCHING_OFF:
                raise self.fail(f"batching.{name}", f"{BATCHING_OFF!r} is built in (batching disabled)")
            if not isinstance(name, str) or not _NAME_RE.match(name):
                raise self.fail(f"batching.{name}", "a name is lower-case letters, digits and dashes")
            out[name] = self.mapping(params, f"batching.{name}")
        return out

    def image(self, value: Any, backend: str) -> tuple[str | None, str]:
        """(image reference, why it is not pinned) for cluster specs."""
        if backend == "local":
            if value is not None:
                raise self.fail("image", "a local sweep runs no image; remove it or use backend: cluster")
            return None, ""
        d = self.mapping(value, "image")
        unknown = sorted(set(d) - {"ref", "name", "lock", "fallback"})
        if unknown:
            raise self.fail(f"image.{unknown[0]}", "unknown field (use ref, or name + lock [+ fallback])")
        if "ref" in d:
            if set(d) != {"ref"}:
                raise self.fail("image", "give either ref or name (+ lock, fallback), not both")
            ref = d["ref"]
            if not isinstance(ref, str) or not ref:
                raise self.fail("image.ref", "must be an image reference")
            note = "" if image_lock.is_pinned(ref) else "image.ref has a tag, not a digest"
            return ref, note
        name = d.get("name")
        if not isinstance(name, str) or not name:
            raise self.fail("image", "needs ref (REPO@sha256:...) or name (a key of the image lock)")
        lock_file = _lock_file(self.base_dir, d, self.lock_path)
        try:
            return image_lock.resolve(image_lock.read_lock(lock_file), name, lock_path=str(lock_file)).ref, ""
        except image_lock.ImageLockError as e:
            fallback = d.get("fallback")
            if not isinstance(fallback, str) or not fallback:
                raise self.fail("image", str(e)) from None
            return fallback, str(e)

    def matrix(self, value: Any, shapes: dict, batchings: dict) -> dict[str, list[Any]]:
        d = self.mapping(value, "matrix")
        out: dict[str, list[Any]] = {}
        for key, values in d.items():
            f = f"matrix.{key}"
            if not isinstance(values, list) or not values:
                raise self.fail(f, "must be a non-empty list of values")
            if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
                raise self.fail(f, "lists a value twice")
            if key == "shape":
                for v in values:
                    if v not in shapes:
                        raise self.fail(f, f"unknown shape {v!r} (defined: {', '.join(shapes)})")
            elif key == "batching":
                for v in values:
                    v = BATCHING_OFF if v is False else v
                    if v not in batchings:
                        raise self.fail(f, f"unknown batching {v!r} (defined: {', '.join(batchings)})")
                values = [BATCHING_OFF if v is False else v for v in values]
            elif key == "replicas":
                values = [self.positive_int(v, f) for v in values]
            elif key == "protocol":
                for v in values:
                    if v not in PROTOCOLS:
                        raise self.fail(f, f"unknown protocol {v!r} (known: {', '.join(PROTOCOLS)})")
            out[key] = list(values)
        if "shape" not in out:
            if len(shapes) != 1:
                raise self.fail("matrix.shape", "required when more than one shape is defined")
            out = {"shape": list(shapes), **out}
        return out

    def expand(self, matrix: dict[str, list[Any]], exclude: Any) -> list[dict[str, Any]]:
        if not isinstance(exclude, list):
            raise self.fail("exclude", "must be a list of mappings")
        rules = []
        for i, rule in enumerate(exclude):
            r = self.mapping(rule, f"exclude[{i}]")
            if not r:
                raise self.fail(f"exclude[{i}]", "an empty rule would exclude everything")
            for k, v in r.items():
                if k not in matrix:
                    raise self.fail(f"exclude[{i}].{k}", f"not a matrix field (matrix: {', '.join(matrix)})")
                vals = v if isinstance(v, list) else [v]
                vals = [BATCHING_OFF if (k == "batching" and x is False) else x for x in vals]
                for x in vals:
                    if x not in matrix[k]:
                        raise self.fail(f"exclude[{i}].{k}", f"{x!r} is not one of the matrix values {matrix[k]}")
                r[k] = vals
            rules.append(r)
        keys = list(matrix)
        points = []
        for combo in itertools.product(*(matrix[k] for k in keys)):
            point = dict(zip(keys, combo, strict=True))
            if not any(all(point[k] in vs for k, vs in r.items()) for r in rules):
                points.append(point)
        if not points:
            raise self.fail("exclude", "excludes every configuration")
        return points

    def config(self, point, matrix, shapes, base_serving, batchings, profile, backend, image) -> Config:
        shape, cpu, mem = shapes[point["shape"]]
        replicas = point.get("replicas", shape.nodes)
        if replicas > shape.nodes:
            raise self.fail(
                "matrix.replicas", f"{replicas} replicas on {shape.nodes} {shape.name} nodes: one replica per node"
            )
        serving = dict(base_serving)
        for k, v in point.items():
            if k not in SPECIAL_KEYS:
                serving[k] = v
        batching = point.get("batching")
        if batching is not None:
            serving = apply_batching(serving, batchings[batching])
        serving = _substitute(serving, {"cpu": cpu, "vcpu": shape.vcpu})
        try:
            sc = ServingConfig.from_dict(serving)
        except (TypeError, ValueError, KeyError) as e:
            where = ", ".join(f"{k}={v}" for k, v in point.items())
            raise self.fail("serving", f"invalid ServingConfig for ({where}): {e}") from None
        name = config_name(shape.name, replicas, point, matrix)
        protocol = point.get("protocol", DEFAULT_PROTOCOL)
        content = {
            "backend": backend,
            "shape": {**shape.to_record(), "node_labels": dict(shape.node_labels)},
            "replicas": replicas,
            "resources": {"cpu": cpu, "memory_gb": mem},
            "serving": sc.to_dict(),
            "image": image,
            "profile": profile,
        }
        if protocol != DEFAULT_PROTOCOL:  # REST Configs keep the ids they had before protocols
            content["protocol"] = protocol
        return Config(
            id=config_id(content),
            name=name,
            shape=shape,
            replicas=replicas,
            cpu=cpu,
            memory_gb=mem,
            serving=sc,
            profile=dict(profile),
            backend=backend,
            image=image,
            protocol=protocol,
        )


def apply_batching(serving: dict[str, Any], params: dict[str, Any] | None) -> dict[str, Any]:
    """ServingConfig fields for a named batching set (None = batching off)."""
    out = dict(serving)
    if params is None:
        out["enable_batching"] = False
        out.pop("batching", None)
    else:
        out["enable_batching"] = True
        out["batching"] = {**dict(serving.get("batching") or {}), **params}
    return out


def _substitute(value: Any, tokens: dict[str, int]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, tokens) for k, v in value.items()}
    if isinstance(value, str) and value in tokens:
        return tokens[value]
    return value


def config_name(shape: str, replicas: int, point: Mapping[str, Any], matrix: Mapping[str, list[Any]]) -> str:
    """A readable name, e.g. ``e2-8-16x2-inter4-batch``: shape x replicas, then the varied fields."""
    parts = [f"{shape}x{replicas}"]
    for key in matrix:
        if key in ("shape", "replicas"):
            continue
        value = point[key]
        if key == "batching":
            if value != BATCHING_OFF:
                parts.append(str(value))
            continue
        if key == "protocol":
            parts.append(str(value))
            continue
        label = NAME_ABBREV.get(key, key.replace("_", "-"))
        if isinstance(value, bool):
            parts.append(label if value else f"no-{label}")
        else:
            parts.append(f"{label}{value}")
    return re.sub(r"[^a-z0-9.-]+", "-", "-".join(parts).lower())
