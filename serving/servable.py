"""Loading a TF Serving model directory with TensorFlow: versions, signatures, warm-up, runs.

TensorFlow is imported lazily (inside functions), so importing this module is cheap; the
thread settings must be applied with `configure_threads` before the first TF op runs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from serving.config import ServingConfig
from serving.json_tensor import ApiError

WARMUP_RELPATH = "assets.extra/tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit


class LoadError(Exception):
    """The model directory cannot be served (missing, no versions, bad SavedModel)."""


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    dtype: str  # TF DataType enum name, e.g. "DT_FLOAT"
    shape: tuple[int | None, ...] | None  # None = unknown rank; None entries = -1


@dataclasses.dataclass(frozen=True)
class Signature:
    name: str
    method_name: str
    inputs: Mapping[str, TensorInfo]
    outputs: Mapping[str, TensorInfo]

    @property
    def input_dtypes(self) -> dict[str, str]:
        return {k: v.dtype for k, v in self.inputs.items()}

    def check_shapes(self, tensors: Mapping[str, np.ndarray]) -> None:
        """Refuses tensors the signature cannot take, as the TF runtime would (INVALID_ARGUMENT)."""
        for name, arr in tensors.items():
            info = self.inputs[name]
            if info.shape is None:
                continue
            if arr.ndim != len(info.shape) or any(
                want is not None and want != got for want, got in zip(info.shape, arr.shape, strict=True)
            ):
                want = "[" + ",".join("?" if d is None else str(d) for d in info.shape) + "]"
                got = "[" + ",".join(str(d) for d in arr.shape) + "]"
                raise ApiError(
                    "INVALID_ARGUMENT",
                    f"input '{name}' has shape {got}, which is incompatible with the signature's shape {want}",
                )


def configure_threads(intra_op: int, inter_op: int) -> None:
    """--tensorflow_intra_op_parallelism / --tensorflow_inter_op_parallelism (0 = TF's choice)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op)


def available_versions(base_path: Path) -> list[int]:
    """Numeric version directories holding a saved_model.pb, ascending."""
    if not base_path.is_dir():
        raise LoadError(f"model base path {base_path} is not a directory")
    versions = []
    for child in base_path.iterdir():
        if child.name.isdigit() and (child / "saved_model.pb").is_file():
            versions.append(int(child.name))
    return sorted(versions)


def versions_to_load(config: ServingConfig, found: list[int]) -> list[int]:
    """The model_version_policy applied to the versions on disk."""
    if config.version_policy == "all":
        chosen = found
    elif config.version_policy == "specific":
        missing = sorted(set(config.versions) - set(found))
        if missing:
            raise LoadError(f"versions {missing} requested by the 'specific' policy are not in {found}")
        chosen = sorted(config.versions)
    else:
        chosen = found[-config.latest_num_versions :]
    if not chosen:
        raise LoadError("no servable versions found (expected numeric directories with saved_model.pb)")
    for label, version in config.version_labels:
        if version not in chosen:
            raise LoadError(f"version label {label!r} points at version {version}, which is not loaded {chosen}")
    return chosen


def _tensor_info(proto: Any) -> TensorInfo:
    from tensorflow.core.framework import types_pb2

    dtype = types_pb2.DataType.Name(proto.dtype)
    if proto.tensor_shape.unknown_rank:
        return TensorInfo(dtype, None)
    return TensorInfo(dtype, tuple(None if d.size < 0 else d.size for d in proto.tensor_shape.dim))


class Servable:
    """One loaded version of a model."""

    def __init__(self, name: str, version: int, path: Path) -> None:
        import tensorflow as tf
        from google.protobuf import json_format
        from tensorflow.core.protobuf import saved_model_pb2

        self.name, self.version, self.path = name, version, path
        proto = saved_model_pb2.SavedModel()
        try:
            proto.ParseFromString((path / "saved_model.pb").read_bytes())
            self._loaded = tf.saved_model.load(str(path))
        except Exception as err:  # TF raises many types for a bad SavedModel
            raise LoadError(f"cannot load SavedModel {path}: {err}") from err
        defs = proto.meta_graphs[0].signature_def
        self.signatures: dict[str, Signature] = {}
        self._functions: dict[str, Callable[..., Any]] = {}
        for sig_name, sig in defs.items():
            if sig_name.startswith("__"):
                continue  # __saved_model_init_op
            self.signatures[sig_name] = Signature(
                sig_name,
                sig.method_name,
                {k: _tensor_info(v) for k, v in sig.inputs.items()},
                {k: _tensor_info(v) for k, v in sig.outputs.items()},
            )
            if sig_name in self._loaded.signatures:
                self._functions[sig_name] = self._loaded.signatures[sig_name]
        # as TF wrote them, for gRPC's GetModelMetadata (our messages are wire-compatible)
        self.signature_def_bytes = {k: v.SerializeToString() for k, v in defs.items() if not k.startswith("__")}
        self.signature_def_json = {
            k: json_format.MessageToDict(v, always_print_fields_with_no_presence=True, preserving_proto_field_name=True)
            for k, v in defs.items()
            if not k.startswith("__")
        }

    def signature(self, name: str) -> Signature:
        key = name or "serving_default"
        sig = self.signatures.get(key)
        if sig is None or key not in self._functions:
            raise ApiError("INVALID_ARGUMENT", f'Serving signature name: "{key}" not found in signature def')
        return sig

    def run(self, signature_name: str, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs a signature on numpy inputs; TF errors become INVALID_ARGUMENT (as in TF Serving)."""
        import tensorflow as tf

        fn = self._functions[signature_name or "serving_default"]
        try:
            args = {k: tf.constant(v) for k, v in tensors.items()}
            result = fn(**args)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as err:
            text = getattr(err, "message", None) or str(err) or repr(err)
            message = " ".join(line.strip() for line in text.splitlines() if line.strip())[:2000]
            raise ApiError("INVALID_ARGUMENT", message) from None
        except tf.errors.OpError as err:
            raise ApiError(op_error_code(err), err.message) from None
        return {k: v.numpy() for k, v in result.items()}

    def warm_up(self, iterations: int = 1) -> int:
        """Replays assets.extra/tf_serving_warmup_requests (PredictionLog records); returns the count."""
        path = self.path / WARMUP_RELPATH
        if not path.is_file():
            return 0
        import tensorflow as tf

        try:
            return self._replay(path, iterations)
        except tf.errors.OpError as err:
            raise LoadError(f"{path}: cannot read warm-up records: {err.message}") from None

    def _replay(self, path: Path, iterations: int) -> int:
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_log_pb2

        count = 0
        for record in tf.data.TFRecordDataset(str(path)):
            if count >= MAX_WARMUP_RECORDS:
                raise LoadError(f"{path}: more than {MAX_WARMUP_RECORDS} warm-up records")
            log = prediction_log_pb2.PredictionLog()
            try:
                log.ParseFromString(record.numpy())
            except Exception as err:  # protobuf's DecodeError
                raise LoadError(f"{path}: warm-up record {count} is not a PredictionLog ({err})") from None
            kind = log.WhichOneof("log_type")
            if kind != "predict_log":
                raise LoadError(f"{path}: warm-up record {count} is a {kind}; only predict_log is supported")
            request = log.predict_log.request
            tensors = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            try:
                self.signature(request.model_spec.signature_name)
                for _ in range(max(1, iterations)):
                    self.run(request.model_spec.signature_name, tensors)
            except ApiError as err:
                raise LoadError(f"{path}: warm-up record {count} failed: {err.message}") from None
            count += 1
        return count


def op_error_code(err: Any) -> str:
    """A TensorFlow OpError's canonical code name (RESOURCE_EXHAUSTED, ...), as TF Serving reports it."""
    from tensorflow.core.lib.core import error_codes_pb2

    try:
        return error_codes_pb2.Code.Name(err.error_code)
    except ValueError:  # a code this TF does not name
        return "INTERNAL"


class Model:
    """All loaded versions of one model, with its version labels."""

    def __init__(self, config: ServingConfig, base_path: str | os.PathLike[str], *, log=lambda _m: None) -> None:
        self.name = config.model_name
        base = Path(base_path)
        chosen = versions_to_load(config, available_versions(base))
        self.versions: dict[int, Servable] = {}
        for version in chosen:
            log(f"loading {self.name} version {version} from {base / str(version)}")
            servable = Servable(self.name, version, base / str(version))
            if config.enable_model_warmup:
                n = servable.warm_up()
                log(f"warm-up: replayed {n} record(s) for version {version}")
            self.versions[version] = servable
        self.labels = dict(config.version_labels)

    @property
    def latest(self) -> Servable:
        return self.versions[max(self.versions)]
