import base64
import hashlib
import json
import struct
import zlib

import numpy as np
import pytest

from loadgen import payload
from loadgen.payload import PayloadError
from serving import tensor_proto
from serving import tfs_messages_pb2 as pb


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
    assert p.record() == {"kind": "tensor", "protocol": "rest", "encoding": "json",
                          "bytes": len(p.body), "sha256": hashlib.sha256(p.body).hexdigest()}
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


def test_grpc_tensor_is_float_tensor_content_of_the_same_image():
    p = payload.load("tensor", protocol="grpc", model="resnet")
    request = pb.PredictRequest.FromString(p.body)
    assert (request.model_spec.name, request.model_spec.signature_name) == ("resnet", "serving_default")
    proto = request.inputs["image_input"]
    assert proto.dtype == pb.DT_FLOAT and len(proto.tensor_content) == 224 * 224 * 3 * 4
    np.testing.assert_array_equal(tensor_proto.to_numpy(proto), payload.sample_image()[np.newaxis].astype(np.float32))
    assert p.record()["protocol"] == "grpc" and p.record()["encoding"] == "tensor_content"
    # the point: ~602 KB of floats against ~0.6-0.8 MB of JSON digits
    assert 602_112 < len(p.body) < 602_112 + 100 < len(payload.load("tensor").body)


def test_grpc_b64_is_the_png_as_string_val():
    p = payload.load("b64", protocol="grpc", model="m")
    request = pb.PredictRequest.FromString(p.body)
    assert request.model_spec.signature_name == "serving_bytes"
    proto = request.inputs["image_bytes"]
    assert proto.dtype == pb.DT_STRING and [d.size for d in proto.tensor_shape.dim] == [1]
    np.testing.assert_array_equal(_decode_png(proto.string_val[0]), payload.sample_image())


def test_grpc_file_is_a_predict_request_whose_model_the_target_names(tmp_path):
    mine = pb.PredictRequest()
    mine.model_spec.name, mine.model_spec.signature_name = "other", "sig"
    mine.inputs["x"].dtype = pb.DT_INT32
    (tmp_path / "req.pb").write_bytes(mine.SerializeToString())
    got = pb.PredictRequest.FromString(payload.load("file:req.pb", base_dir=str(tmp_path),
                                                    protocol="grpc", model="m").body)
    assert (got.model_spec.name, got.model_spec.signature_name, list(got.inputs)) == ("m", "sig", ["x"])
    (tmp_path / "bad.pb").write_bytes(b"\xff\xff\xff")
    with pytest.raises(PayloadError, match="not a serialised PredictRequest"):
        payload.load("file:bad.pb", base_dir=str(tmp_path), protocol="grpc", model="m")


def test_grpc_needs_a_model():
    with pytest.raises(PayloadError, match="grpc://HOST:PORT/MODEL"):
        payload.load("b64", protocol="grpc")
