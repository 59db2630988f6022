"""Request bodies, serialised once per run and never per request.

Kinds: ``tensor`` (the seed study's JSON: one 224x224x3 image as nested integer lists
for the ``serving_default`` signature), ``b64`` (a PNG for the ``serving_bytes``
signature, base64 in JSON) and ``file:PATH`` (raw bytes sent as they are). The image
is generated here with numpy (no downloads, no TensorFlow).

Over gRPC the same logical choice is a PredictRequest (our wire-compatible messages,
serving/tfs_messages.proto): ``tensor`` is the image as DT_FLOAT ``tensor_content``
(little-endian float32, [1,224,224,3]), ``b64`` the PNG as DT_STRING ``string_val``,
``file:PATH`` a serialised PredictRequest. The model named is the targets' (``model``).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import struct
import zlib

import numpy as np
from google.protobuf.message import DecodeError

from loadgen.targets import PROTOCOLS
from model import signatures
from serving import tensor_proto
from serving import tfs_messages_pb2 as pb

KINDS = ("tensor", "b64", "file")
DEFAULT_PAYLOAD = "b64"  # every entry point's default (loadgen.options)
IMAGE_SIZE = signatures.IMAGE_SIZE


class PayloadError(ValueError):
    """A payload that cannot be built (message says why)."""


@dataclasses.dataclass(frozen=True)
class Payload:
    kind: str
    body: bytes = dataclasses.field(repr=False)
    content_type: str
    sha256: str
    protocol: str = "rest"  # one of PROTOCOLS
    encoding: str = "json"  # json | raw (REST); tensor_content | string_val | raw (gRPC)

    def record(self) -> dict:
        """The "payload" object of run.json: ``bytes`` is each request's body (REST) or
        serialised PredictRequest (gRPC), the bytes on the wire per request but for
        HTTP headers and gRPC's 5-byte framing."""
        return {"kind": self.kind, "protocol": self.protocol, "encoding": self.encoding,
                "bytes": len(self.body), "sha256": self.sha256}


def _make(kind: str, body: bytes, content_type: str, *, protocol: str = "rest",
          encoding: str = "json") -> Payload:
    return Payload(kind, body, content_type, hashlib.sha256(body).hexdigest(), protocol, encoding)


def sample_image(size: int = IMAGE_SIZE, seed: int = 0) -> np.ndarray:
    """A deterministic RGB uint8 image: smooth colour gradients plus seeded noise."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / max(size - 1, 1)
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 12.0, (size, size, 3))
    base = np.stack(
        [255.0 * x, 255.0 * y, 127.5 + 127.5 * np.sin(6.0 * np.pi * (x + y) / 2.0)], axis=-1
    )
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + tag + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))


def encode_png(image: np.ndarray) -> bytes:
    """Encode an HxWx3 uint8 array as an 8-bit RGB PNG (filter 0, zlib)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise PayloadError(f"PNG needs an HxWx3 uint8 image, got {image.shape} {image.dtype}")
    height, width, _ = image.shape
    rows = np.concatenate(
        [np.zeros((height, 1), np.uint8), image.reshape(height, width * 3)], axis=1
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 9)) + _png_chunk(b"IEND", b""))


def tensor_payload(image: np.ndarray | None = None) -> Payload:
    """The seed study's body: {"signature_name": "serving_default", "instances": [HxWx3]}."""
    image = sample_image() if image is None else image
    instances = json.dumps([image.astype(int).tolist()], separators=(",", ":"))
    body = f'{{"signature_name":"{signatures.DEFAULT_SIGNATURE}","instances":' + instances + "}"
    return _make("tensor", body.encode("ascii"), "application/json")


def b64_payload(image_bytes: bytes | None = None) -> Payload:
    """{"signature_name": "serving_bytes", "instances": [{"b64": <PNG>}]}."""
    image_bytes = encode_png(sample_image()) if image_bytes is None else image_bytes
    body = json.dumps(
        {"signature_name": signatures.BYTES_SIGNATURE,
         "instances": [{"b64": base64.b64encode(image_bytes).decode("ascii")}]},
        separators=(",", ":"),
    )
    return _make("b64", body.encode("ascii"), "application/json")


def file_payload(path: str) -> Payload:
    """Raw bytes of a file, sent as they are."""
    try:
        with open(path, "rb") as f:
            body = f.read()
    except OSError as e:
        raise PayloadError(f"cannot read payload file {path!r}: {e.strerror}") from None
    ctype = "application/json" if path.endswith(".json") else "application/octet-stream"
    return _make("file", body, ctype, encoding="json" if ctype == "application/json" else "raw")


GRPC_CONTENT_TYPE = "application/grpc"


def _grpc(kind: str, request: pb.PredictRequest, model: str, encoding: str) -> Payload:
    request.model_spec.name = model
    return _make(kind, request.SerializeToString(deterministic=True), GRPC_CONTENT_TYPE,
                 protocol="grpc", encoding=encoding)


def grpc_tensor_payload(model: str, image: np.ndarray | None = None) -> Payload:
    """The seed study's image for ``serving_default`` as DT_FLOAT tensor_content, [1,H,W,3]."""
    image = sample_image() if image is None else image
    request = pb.PredictRequest()
    request.model_spec.signature_name = signatures.DEFAULT_SIGNATURE
    request.inputs[signatures.IMAGE_INPUT].CopyFrom(
        tensor_proto.from_numpy(image[np.newaxis].astype(np.float32)))
    return _grpc("tensor", request, model, "tensor_content")


def grpc_bytes_payload(model: str, image_bytes: bytes | None = None) -> Payload:
    """The PNG for ``serving_bytes`` as DT_STRING string_val, shape [1]."""
    image_bytes = encode_png(sample_image()) if image_bytes is None else image_bytes
    request = pb.PredictRequest()
    request.model_spec.signature_name = signatures.BYTES_SIGNATURE
    request.inputs[signatures.BYTES_INPUT].CopyFrom(
        tensor_proto.from_numpy(np.array([image_bytes], dtype=object)))
    return _grpc("b64", request, model, "string_val")


def grpc_file_payload(path: str, model: str) -> Payload:
    """A file holding a serialised PredictRequest; the targets' model replaces its name."""
    raw = file_payload(path).body
    request = pb.PredictRequest()
    try:
        request.ParseFromString(raw)
    except DecodeError:
        raise PayloadError(f"payload file {path!r} is not a serialised PredictRequest "
                           "(a gRPC run sends one)") from None
    return _grpc("file", request, model, "raw")


def load(spec: str, *, base_dir: str | None = None, protocol: str = "rest",
         model: str | None = None) -> Payload:
    """Build a payload from a CLI spec: ``tensor``, ``b64`` or ``file:PATH``, encoded for
    ``protocol`` (gRPC: a PredictRequest naming ``model``)."""
    if protocol not in PROTOCOLS:
        raise PayloadError(f"unknown protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if protocol == "grpc" and not model:
        raise PayloadError("a gRPC payload names its model: targets are grpc://HOST:PORT/MODEL")
    if spec == "tensor":
        return grpc_tensor_payload(model) if protocol == "grpc" else tensor_payload()
    if spec == "b64":
        return grpc_bytes_payload(model) if protocol == "grpc" else b64_payload()
    if spec.startswith("file:"):
        path = spec[len("file:"):]
        if not path:
            raise PayloadError("payload file: needs a path, e.g. file:body.json")
        if base_dir and not os.path.isabs(path):
            path = os.path.join(base_dir, path)
        return grpc_file_payload(path, model) if protocol == "grpc" else file_payload(path)
    raise PayloadError(f"unknown payload {spec!r}: use tensor, b64 or file:PATH")
