"""ServingConfig: one TF Serving deployment's settings, and the files and flags it renders.

What `tensorflow_model_server` reads, rendered from one typed, validated record:

- `argv(...)`: the command-line flags (`--tensorflow_intra_op_parallelism`, `--enable_batching`, ...);
- `models_config_text()`: `models.config`, a text `ModelServerConfig` (name, base path,
  version policy, version labels);
- `batching_parameters_text()`: `batching_parameters.txt`, a text `BatchingParameters`;
- `monitoring_config_text()`: `monitoring.config`, a text `MonitoringConfig`.

TF Serving's own rules are checked when the record is built, so a bad setting fails here
with a clear message rather than when the server refuses to start. Unset batching fields
(None) are left out of the file, exactly as TF Serving leaves them at its own defaults
(`BATCHING_DEFAULTS`).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

MODELS_CONFIG_FILE = "models.config"
BATCHING_PARAMETERS_FILE = "batching_parameters.txt"
MONITORING_CONFIG_FILE = "monitoring.config"
DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"
DEFAULT_REST_TIMEOUT_MS = 30000
DEFAULT_MAX_BODY_BYTES = 64 * 2**20  # the local server's request body limit (413 above it)

# TF Serving's values for batching fields left unset in the parameters file.
# num_batch_threads defaults to the number of schedulable CPUs (port::MaxParallelism()).
BATCHING_DEFAULTS = {
    "max_batch_size": 1000,
    "batch_timeout_micros": 0,
    "max_enqueued_batches": 10,
    "thread_pool_name": "batch_threads",
}
# The pool name TF Serving uses when --enable_batching is given without a parameters file.
NO_FILE_THREAD_POOL_NAME = "model_server_batch_threads"

VERSION_POLICIES = ("latest", "specific", "all")
_MODEL_NAME_RE = re.compile(r"^[^/:\s'\"\\]+$")  # must fit the REST URL regex ([^/:]+) and a quoted string
_LABEL_RE = re.compile(r"^[a-zA-Z0-9_]+$")


class ConfigError(ValueError):
    """A setting TF Serving would reject (or that cannot be rendered)."""


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")


def _check_keys(where: str, given: Mapping[str, Any], known: Sequence[str]) -> None:
    if not isinstance(given, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(given).__name__}")
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigError(f"unknown {where} field(s) {', '.join(unknown)}; known: {', '.join(known)}")


def _flag(value: bool) -> str:
    return "true" if value else "false"


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's `BatchingParameters` (session_bundle_config.proto). None = unset = TF default."""

    max_batch_size: int | None = None
    batch_timeout_micros: int | None = None
    max_enqueued_batches: int | None = None
    num_batch_threads: int | None = None
    thread_pool_name: str | None = None
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False

    def __post_init__(self) -> None:
        for name, minimum in (
            ("max_batch_size", 1),
            ("batch_timeout_micros", 0),
            ("max_enqueued_batches", 1),
            ("num_batch_threads", 1),
        ):
            value = getattr(self, name)
            if value is not None:
                _check_int(f"batching.{name}", value, minimum)
        if self.thread_pool_name is not None and (
            not isinstance(self.thread_pool_name, str) or not _LABEL_RE.match(self.thread_pool_name)
        ):
            raise ConfigError(f"batching.thread_pool_name must match [a-zA-Z0-9_]+, got {self.thread_pool_name!r}")
        _check_bool("batching.pad_variable_length_inputs", self.pad_variable_length_inputs)
        sizes = tuple(self.allowed_batch_sizes)
        object.__setattr__(self, "allowed_batch_sizes", sizes)
        for size in sizes:
            _check_int("batching.allowed_batch_sizes entry", size, 1)
        if sizes:
            if any(b <= a for a, b in itertools.pairwise(sizes)):
                raise ConfigError(f"batching.allowed_batch_sizes must be strictly increasing, got {list(sizes)}")
            if sizes[-1] != self.effective_max_batch_size:
                raise ConfigError(
                    f"batching.allowed_batch_sizes must end with max_batch_size "
                    f"({self.effective_max_batch_size}), got {list(sizes)}"
                )

    @property
    def effective_max_batch_size(self) -> int:
        return self.max_batch_size if self.max_batch_size is not None else BATCHING_DEFAULTS["max_batch_size"]

    @property
    def effective_batch_timeout_micros(self) -> int:
        v = self.batch_timeout_micros
        return v if v is not None else BATCHING_DEFAULTS["batch_timeout_micros"]

    @property
    def effective_max_enqueued_batches(self) -> int:
        v = self.max_enqueued_batches
        return v if v is not None else BATCHING_DEFAULTS["max_enqueued_batches"]

    def effective_num_batch_threads(self, schedulable_cpus: int) -> int:
        return self.num_batch_threads if self.num_batch_threads is not None else max(1, schedulable_cpus)

    @property
    def effective_thread_pool_name(self) -> str:
        return self.thread_pool_name or BATCHING_DEFAULTS["thread_pool_name"]

    def text(self) -> str:
        """The text proto, fields in proto order; unset fields are left out."""
        lines = []
        for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
            value = getattr(self, name)
            if value is not None:
                lines.append(f"{name} {{ value: {value} }}")
        if self.thread_pool_name is not None:
            lines.append(f'thread_pool_name {{ value: "{self.thread_pool_name}" }}')
        lines.extend(f"allowed_batch_sizes: {size}" for size in self.allowed_batch_sizes)
        if self.pad_variable_length_inputs:
            lines.append("pad_variable_length_inputs: true")
        return "".join(line + "\n" for line in lines)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["allowed_batch_sizes"] = list(self.allowed_batch_sizes)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BatchingParameters:
        _check_keys("batching", d, [f.name for f in dataclasses.fields(cls)])
        values = dict(d)
        if "allowed_batch_sizes" in values:
            sizes = values["allowed_batch_sizes"]
            if sizes is None:
                sizes = ()
            if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
                raise ConfigError(f"batching.allowed_batch_sizes must be a list of integers, got {sizes!r}")
            values["allowed_batch_sizes"] = tuple(sizes)
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """One tensorflow_model_server setting. Thread counts of 0 mean "TF chooses" (TF Serving's default)."""

    model_name: str = "resnet"
    # Where the version directories live; "" = /models/<model_name> (the TF Serving image's layout).
    base_path: str = ""
    version_policy: str = "latest"  # latest | specific | all
    latest_num_versions: int = 1  # for "latest"
    versions: tuple[int, ...] = ()  # for "specific"
    version_labels: tuple[tuple[str, int], ...] = ()
    intra_op: int = 0  # --tensorflow_intra_op_parallelism
    inter_op: int = 0  # --tensorflow_inter_op_parallelism
    rest_api_num_threads: int | None = None  # None = TF Serving's 4 x CPUs
    rest_api_timeout_ms: int = DEFAULT_REST_TIMEOUT_MS
    enable_batching: bool = False
    # Parameters file; None with enable_batching = TF Serving's built-in defaults (no file).
    batching: BatchingParameters | None = None
    enable_model_warmup: bool = True
    monitoring: bool = True  # Prometheus metrics on the REST port
    monitoring_path: str = DEFAULT_METRICS_PATH

    def __post_init__(self) -> None:
        if not isinstance(self.model_name, str) or not _MODEL_NAME_RE.match(self.model_name):
            raise ConfigError(
                f"model_name {self.model_name!r} is not usable: it must be non-empty and contain no '/', ':', "
                "quotes, backslashes or spaces (it is part of the REST URL /v1/models/<name>)"
            )
        if not isinstance(self.base_path, str):
            raise ConfigError(f"base_path must be a string, got {self.base_path!r}")
        if not self.base_path:
            object.__setattr__(self, "base_path", f"/models/{self.model_name}")
        if any(c in self.base_path for c in "'\"\\\n"):
            raise ConfigError(f"base_path {self.base_path!r} contains quotes, backslashes or newlines")
        if self.version_policy not in VERSION_POLICIES:
            raise ConfigError(
                f"version_policy must be one of {', '.join(VERSION_POLICIES)}, got {self.version_policy!r}"
            )
        _check_int("latest_num_versions", self.latest_num_versions, 1)
        versions = tuple(self.versions)
        object.__setattr__(self, "versions", versions)
        for v in versions:
            _check_int("versions entry", v, 1)
        if self.version_policy == "specific":
            if not versions:
                raise ConfigError("version_policy 'specific' needs at least one entry in versions")
            if len(set(versions)) != len(versions):
                raise ConfigError(f"versions has duplicates: {list(versions)}")
        elif versions:
            raise ConfigError(
                f"versions is only used with version_policy 'specific' (policy is {self.version_policy!r})"
            )
        if self.version_policy != "latest" and self.latest_num_versions != 1:
            raise ConfigError("latest_num_versions is only used with version_policy 'latest'")
        labels = tuple((str(k), v) for k, v in self.version_labels)
        object.__setattr__(self, "version_labels", labels)
        seen = set()
        for label, version in labels:
            if not _LABEL_RE.match(label):
                raise ConfigError(f"version label {label!r} must match [a-zA-Z0-9_]+ (TF Serving's rule)")
            if label in seen:
                raise ConfigError(f"version label {label!r} given twice")
            seen.add(label)
            _check_int(f"version label {label!r}", version, 1)
            if self.version_policy == "specific" and version not in versions:
                raise ConfigError(
                    f"version label {label!r} points at version {version}, which the 'specific' policy does not "
                    f"load {list(versions)}; TF Serving only labels loaded versions"
                )
        _check_int("intra_op", self.intra_op, 0)
        _check_int("inter_op", self.inter_op, 0)
        if self.rest_api_num_threads is not None:
            _check_int("rest_api_num_threads", self.rest_api_num_threads, 1)
        _check_int("rest_api_timeout_ms", self.rest_api_timeout_ms, 1)
        _check_bool("enable_batching", self.enable_batching)
        if self.batching is not None:
            if not isinstance(self.batching, BatchingParameters):
                raise ConfigError(f"batching must be BatchingParameters, got {type(self.batching).__name__}")
            if not self.enable_batching:
                raise ConfigError(
                    "batching parameters given but enable_batching is false: TF Serving refuses "
                    "--batching_parameters_file without --enable_batching"
                )
        _check_bool("enable_model_warmup", self.enable_model_warmup)
        _check_bool("monitoring", self.monitoring)
        if not isinstance(self.monitoring_path, str) or not self.monitoring_path.startswith("/") or any(
            c in self.monitoring_path for c in "\"\\\n "
        ):
            raise ConfigError(f"monitoring_path must be an absolute URL path, got {self.monitoring_path!r}")

    # --- effective values ---------------------------------------------------------------

    @property
    def batching_effective(self) -> BatchingParameters | None:
        """The parameters the server runs with (None = batching off)."""
        if not self.enable_batching:
            return None
        if self.batching is None:
            return BatchingParameters(thread_pool_name=NO_FILE_THREAD_POOL_NAME)
        return self.batching

    # --- rendering ----------------------------------------------------------------------

    def models_config_text(self, *, base_path: str | None = None) -> str:
        """`models.config` (text ModelServerConfig); `base_path` overrides the record's."""
        path = self.base_path if base_path is None else str(base_path)
        if not path or any(c in path for c in "'\"\\\n"):
            raise ConfigError(f"base_path {path!r} is empty or contains quotes, backslashes or newlines")
        lines = [
            "model_config_list {",
            "  config {",
            f"    name: '{self.model_name}'",
            f"    base_path: '{path}'",
            "    model_platform: 'tensorflow'",
        ]
        if self.version_policy == "latest":
            lines.append(f"    model_version_policy {{ latest {{ num_versions: {self.latest_num_versions} }} }}")
        elif self.version_policy == "all":
            lines.append("    model_version_policy { all {} }")
        else:
            inner = " ".join(f"versions: {v}" for v in self.versions)
            lines.append(f"    model_version_policy {{ specific {{ {inner} }} }}")
        lines.extend(f"    version_labels {{ key: '{k}' value: {v} }}" for k, v in self.version_labels)
        lines += ["  }", "}"]
        return "".join(line + "\n" for line in lines)

    def batching_parameters_text(self) -> str:
        """`batching_parameters.txt`, or "" when there is no file to write (batching off, or TF defaults)."""
        if not self.enable_batching or self.batching is None:
            return ""
        return self.batching.text()

    def monitoring_config_text(self) -> str:
        """`monitoring.config` (text MonitoringConfig), or "" when monitoring is off."""
        if not self.monitoring:
            return ""
        return f'prometheus_config {{\n  enable: true\n  path: "{self.monitoring_path}"\n}}\n'

    def files(self, *, base_path: str | None = None) -> dict[str, str]:
        """Every config file this setting needs, by file name (files with no content are left out)."""
        texts = ((MODELS_CONFIG_FILE, self.models_config_text(base_path=base_path)),
                 (BATCHING_PARAMETERS_FILE, self.batching_parameters_text()),
                 (MONITORING_CONFIG_FILE, self.monitoring_config_text()))
        return {name: text for name, text in texts if text}

    def write_files(self, directory: str | Path, *, base_path: str | None = None) -> dict[str, Path]:
        """Writes `files()` into `directory` (created if needed); returns their paths."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        written = {}
        for name, text in self.files(base_path=base_path).items():
            (d / name).write_text(text)
            written[name] = d / name
        return written

    def argv(
        self,
        *,
        config_dir: str | Path,
        rest_port: int | None = 8501,
        grpc_port: int | None = 8500,
        binary: str | None = None,
    ) -> list[str]:
        """tensorflow_model_server flags, reading the files of `files()` from `config_dir`.

        With `binary` the list starts with it (a command line); without, it is the container's
        args (the TF Serving image's entrypoint supplies the program). A port of None is left out.
        """
        if rest_port is not None:
            _check_int("rest_port", rest_port, 1)
        if grpc_port is not None:
            _check_int("grpc_port", grpc_port, 1)
        if rest_port is not None and rest_port == grpc_port:
            raise ConfigError(f"rest_port and grpc_port must differ (both {rest_port}): TF Serving refuses to start")
        d = str(config_dir).rstrip("/") or "/"

        def path(name: str) -> str:
            return f"{d}/{name}" if d != "/" else f"/{name}"

        args = [binary] if binary else []
        if grpc_port is not None:
            args.append(f"--port={grpc_port}")
        if rest_port is not None:
            args.append(f"--rest_api_port={rest_port}")
        args.append(f"--model_config_file={path(MODELS_CONFIG_FILE)}")
        if self.rest_api_num_threads is not None:
            args.append(f"--rest_api_num_threads={self.rest_api_num_threads}")
        args.append(f"--rest_api_timeout_in_ms={self.rest_api_timeout_ms}")
        args.append(f"--tensorflow_intra_op_parallelism={self.intra_op}")
        args.append(f"--tensorflow_inter_op_parallelism={self.inter_op}")
        if self.enable_batching:
            args.append("--enable_batching=true")
            if self.batching is not None:
                args.append(f"--batching_parameters_file={path(BATCHING_PARAMETERS_FILE)}")
        if self.monitoring:
            args.append(f"--monitoring_config_file={path(MONITORING_CONFIG_FILE)}")
        args.append(f"--enable_model_warmup={_flag(self.enable_model_warmup)}")
        return args

    # --- records ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the `serving` record of run.json); `from_dict` reads it back."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d.update(versions=list(self.versions), version_labels=dict(self.version_labels),
                 batching=self.batching.to_dict() if self.batching is not None else None)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ServingConfig:
        """Builds from a dict such as a sweep spec's `serving` block; unknown keys are an error.

        `batching` may be a mapping of BatchingParameters fields (turning batching on unless
        enable_batching says otherwise), true (TF Serving's defaults) or false/None.
        """
        _check_keys("serving", d, [f.name for f in dataclasses.fields(cls)])
        values = dict(d)
        batching = values.get("batching")
        if isinstance(batching, bool):
            values.setdefault("enable_batching", batching)
            values["batching"] = None
        elif batching is not None:
            values["batching"] = BatchingParameters.from_dict(batching)
            values.setdefault("enable_batching", True)
        if "versions" in values:
            versions = values["versions"]
            if isinstance(versions, int) and not isinstance(versions, bool):
                versions = [versions]
            if isinstance(versions, (str, bytes)) or not isinstance(versions, Sequence):
                raise ConfigError(f"versions must be a list of integers, got {versions!r}")
            values["versions"] = tuple(versions)
        if "version_labels" in values:
            labels = values["version_labels"] or {}
            if not isinstance(labels, Mapping):
                raise ConfigError(f"version_labels must be a mapping label: version, got {labels!r}")
            values["version_labels"] = tuple(labels.items())
        if values.get("base_path") is None:
            values.pop("base_path", None)
        return cls(**values)
