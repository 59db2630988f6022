"""Request bodies, serialised once per run and never per request.

Kinds: ``tensor`` (the seed study's JSON: one 224x224x3 image as nested integer lists
for the ``serving_default`` signature), ``b64`` (a PNG for the ``serving_bytes``
signature, base64 in JSON) and ``file:PATH`` (raw bytes sent as they are). The image
is generated here with numpy (no downloads, no TensorFlow).
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

KINDS = ("tensor", "b64", "file")
DEFAULT_PAYLOAD = "b64"  # every entry point's default (loadgen.options)
IMAGE_SIZE = 224


class PayloadError(ValueError):
    """A payload that cannot be built (message says why)."""


@dataclasses.dataclass(frozen=True)
class Payload:
    kind: str
    body: bytes = dataclasses.field(repr=False)
    content_type: str
    sha256: str

    def record(self) -> dict:
        """The "payload" object of run.json."""
        return {"kind": self.kind, "bytes": len(self.body), "sha256": self.sha256}


def _make(kind: str, body: bytes, content_type: str) -> Payload:
    return Payload(kind, body, content_type, hashlib.sha256(body).hexdigest())


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
    body = '{"signature_name":"serving_default","instances":' + instances + "}"
    return _make("tensor", body.encode("ascii"), "application/json")


def b64_payload(image_bytes: bytes | None = None) -> Payload:
    """{"signature_name": "serving_bytes", "instances": [{"b64": <PNG>}]}."""
    image_bytes = encode_png(sample_image()) if image_bytes is None else image_bytes
    body = json.dumps(
        {"signature_name": "serving_bytes",
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
    return _make("file", body, ctype)


def load(spec: str, *, base_dir: str | None = None) -> Payload:
    """Build a payload from a CLI spec: ``tensor``, ``b64`` or ``file:PATH``."""
    if spec == "tensor":
        return tensor_payload()
    if spec == "b64":
        return b64_payload()
    if spec.startswith("file:"):
        path = spec[len("file:"):]
        if not path:
            raise PayloadError("payload file: needs a path, e.g. file:body.json")
        if base_dir and not os.path.isabs(path):
            path = os.path.join(base_dir, path)
        return file_payload(path)
    raise PayloadError(f"unknown payload {spec!r}: use tensor, b64 or file:PATH")
