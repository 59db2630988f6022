"""bench/serving's measuring helpers: the rate between completion events, quiet slices, and
the REST and gRPC bodies of one point."""

import base64
import json

import numpy as np
import pytest

from bench.serving import bench
from serving import tensor_proto
from serving import tfs_messages_pb2 as pb


def test_rate_counts_whole_batches_between_completion_events():
    # a batch of 8 every 0.4 s, its responses spread over 2 ms: 20 images/s whatever the window's edges
    completions = [(1.0 + 0.4 * k + 0.0002 * j, 1) for k in range(20) for j in range(8)]
    for start, end in ((1.1, 6.1), (0.9, 6.0), (1.35, 5.5)):
        assert bench.rate(completions, start, end) == pytest.approx(20.0)
    # counting whole windows (the old way) is off by up to a batch
    assert sum(n for t, n in completions if 1.1 <= t <= 6.1) / 5.0 != pytest.approx(20.0)


def test_rate_with_single_requests_and_too_few_events():
    completions = [(0.3 * k, 2) for k in range(100)]
    assert bench.rate(completions, 1.05, 10.0) == pytest.approx(2 / 0.3)
    assert bench.rate([(1.0, 8)], 0.0, 4.0) == 2.0  # one event: images over the window
    assert bench.rate([], 0.0, 4.0) == 0.0


def test_quiet_repeats_a_slice_while_other_processes_were_busy(monkeypatch):
    others = iter([0.9, 0.5, 0.05, 0.0])
    monkeypatch.setattr(bench, "others_cpus", lambda measure, pids: (measure(), next(others)))
    results = iter("abcd")
    assert bench.quiet(lambda: next(results), [], attempts=5) == ("c", 0.05, 3)
    others = iter([0.9, 0.4, 0.6])
    results = iter("abc")
    assert bench.quiet(lambda: next(results), [], attempts=3) == ("b", 0.4, 2)  # none quiet: the quietest


def test_grpc_tensor_body_is_the_rest_body_s_pixels_as_float_tensor_content():
    instance = [[[0, 1, 2], [3, 4, 255]]]  # a 1x2 RGB image of 0-255 integers, as the REST body sends it
    rest = json.loads(bench.rest_body("serving_default", instance, 3))
    assert rest == {"signature_name": "serving_default", "instances": [instance] * 3}
    request = pb.PredictRequest.FromString(bench.grpc_body("serving_default", "image_input", instance, 3))
    assert (request.model_spec.name, request.model_spec.signature_name) == (bench.MODEL_NAME, "serving_default")
    proto = request.inputs["image_input"]
    assert proto.dtype == pb.DataType.Value("DT_FLOAT")
    assert len(proto.tensor_content) == 3 * 1 * 2 * 3 * 4 and not proto.float_val
    np.testing.assert_array_equal(tensor_proto.to_numpy(proto), np.asarray([instance] * 3, np.float32))


def test_grpc_b64_body_carries_the_decoded_bytes_as_string_val():
    jpeg = b"\xff\xd8 not really a jpeg"
    request = pb.PredictRequest.FromString(bench.grpc_body(
        "serving_bytes", "image_bytes", {"b64": base64.b64encode(jpeg).decode()}, 2))
    proto = request.inputs["image_bytes"]
    assert proto.dtype == pb.DataType.Value("DT_STRING")
    assert list(proto.string_val) == [jpeg, jpeg]
    assert [d.size for d in proto.tensor_shape.dim] == [2]
