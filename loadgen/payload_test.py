import base64
import hashlib
import json
import struct
import zlib

import numpy as np
import pytest

from loadgen import payload
from loadgen.payload import PayloadError


def _decode_png(data: bytes) -> np.ndarray:
    """Independent minimal PNG reader (filter 0 only) to check the encoder."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    width = height = None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        tag, chunk = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(tag + chunk) & 0xFFFFFFFF
        if tag == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", chunk[:10])
            assert (depth, ctype) == (8, 2)
        elif tag == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * 3)
    assert np.all(raw[:, 0] == 0)
    return raw[:, 1:].reshape(height, width, 3)


def test_sample_image_is_deterministic_and_varied():
    a, b = payload.sample_image(), payload.sample_image()
    assert a.shape == (224, 224, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, payload.sample_image(seed=1))
    assert a.std() > 30


def test_png_round_trips():
    img = payload.sample_image(size=17, seed=3)
    np.testing.assert_array_equal(_decode_png(payload.encode_png(img)), img)


def test_png_rejects_wrong_shape():
    with pytest.raises(PayloadError):
        payload.encode_png(np.zeros((4, 4), np.uint8))


def test_tensor_payload_matches_seed_format():
    p = payload.load("tensor")
    doc = json.loads(p.body)
    assert doc["signature_name"] == "serving_default"
    arr = np.array(doc["instances"])
    assert arr.shape == (1, 224, 224, 3)
    np.testing.assert_array_equal(arr[0], payload.sample_image())
    assert 400_000 < len(p.body) < 800_000  # the seed's ~0.6 MB
    assert p.record() == {"kind": "tensor", "bytes": len(p.body),
                          "sha256": hashlib.sha256(p.body).hexdigest()}
    assert p.content_type == "application/json"


def test_b64_payload_holds_a_png_of_the_image():
    p = payload.load("b64")
    doc = json.loads(p.body)
    assert doc["signature_name"] == "serving_bytes"
    png = base64.b64decode(doc["instances"][0]["b64"])
    np.testing.assert_array_equal(_decode_png(png), payload.sample_image())
    assert p.kind == "b64"


def test_file_payload_is_raw(tmp_path):
    f = tmp_path / "body.bin"
    f.write_bytes(b"\x00\x01hello")
    p = payload.load("file:body.bin", base_dir=str(tmp_path))
    assert p.body == b"\x00\x01hello" and p.kind == "file"
    assert p.content_type == "application/octet-stream"
    assert payload.load(f"file:{f}").sha256 == p.sha256


@pytest.mark.parametrize("spec", ["nope", "file:", "file:/nonexistent/x.json"])
def test_bad_specs_say_why(spec):
    with pytest.raises(PayloadError):
        payload.load(spec)
