"""Conformance of the local server's gRPC endpoint with TF Serving's, over real gRPC on 127.0.0.1.

Requests are built with servesweep's own messages (serving/tfs_messages.proto); replies of
GetModelMetadata and GetModelStatus are decoded with tensorflow-serving-api's classes too,
so the wire format is checked against TF Serving's. One server (tiny model) per module.
"""

import base64
import json
import urllib.request

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving import tensor_proto
from serving import tfs_grpc as api
from serving import tfs_messages_pb2 as pb
from serving.config import ServingConfig
from serving.conftest import start_server

IMAGE = np.full((1, 224, 224, 3), 0.5, dtype=np.float32)
MAX_MESSAGE = 4 * 2**20  # the local server's --max_body_bytes, for REST bodies and gRPC messages alike


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    config = ServingConfig(model_name="tiny", intra_op=1, inter_op=1, version_labels=(("stable", 1),))
    srv = start_server(config, tiny_model, tmp_path_factory.mktemp("srv"), local=True, max_body_bytes=MAX_MESSAGE)
    yield srv
    assert srv.stop() == 0  # graceful exit


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.grpc_url.removeprefix("grpc://"), options=list(api.RECEIVE_ANY_SIZE)) as ch:
        yield ch


def call(channel, method, request, response_cls, raw=False):
    fn = channel.unary_unary(method, request_serializer=None if raw else type(request).SerializeToString,
                             response_deserializer=response_cls.FromString)
    return fn(request, timeout=60)


def predict(channel, inputs, *, name="tiny", signature="", version=None, label=None, output_filter=()):
    request = pb.PredictRequest(output_filter=list(output_filter))
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    for alias, proto in inputs.items():
        request.inputs[alias].CopyFrom(proto)
    return call(channel, api.PREDICT, request, pb.PredictResponse)


def expect(code, message, fn, *args, **kwargs):
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, **kwargs)
    assert info.value.code() == code, info.value.details()
    assert info.value.details() == message
    return info.value


def rest_predict(server, body):
    req = urllib.request.Request(f"{server.url}/v1/models/tiny:predict", data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def test_predict_tensor_content_and_typed_values_agree_with_rest(server, channel):
    reply = predict(channel, {"image_input": tensor_proto.from_numpy(IMAGE)})
    out = tensor_proto.to_numpy(reply.outputs["probabilities"] if "probabilities" in reply.outputs
                                else next(iter(reply.outputs.values())))
    assert out.shape == (1, 1000) and abs(float(out.sum()) - 1.0) < 1e-3
    assert reply.model_spec.name == "tiny" and reply.model_spec.version.value == 1
    assert reply.model_spec.signature_name == "serving_default"
    (out_proto,) = reply.outputs.values()
    assert out_proto.float_val and not out_proto.tensor_content  # TF Serving's default: typed values
    typed = predict(channel, {"image_input": tensor_proto.from_numpy(IMAGE, content=False)})
    assert {k: tensor_proto.to_numpy(v).tolist() for k, v in typed.outputs.items()} == {
        k: tensor_proto.to_numpy(v).tolist() for k, v in reply.outputs.items()}
    rest = rest_predict(server, {"inputs": IMAGE.tolist()})["outputs"]
    assert np.allclose(np.asarray(rest), out, rtol=1e-5)
    labelled = predict(channel, {"image_input": tensor_proto.from_numpy(IMAGE)}, label="stable")
    assert labelled.model_spec.version.value == 1


def test_predict_bytes_signature_with_string_val(channel):
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC")
    proto = tensor_proto.from_numpy(np.array([png], dtype=object))
    assert proto.dtype == pb.DT_STRING and list(proto.string_val) == [png]
    reply = predict(channel, {"image_bytes": proto}, signature="serving_bytes")
    (out,) = reply.outputs.values()
    assert tensor_proto.to_numpy(out).shape == (1, 1000)


def test_bad_requests_get_tf_servings_codes_and_messages(channel):
    image = {"image_input": tensor_proto.from_numpy(IMAGE)}
    expect(grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)", predict, channel, image,
           name="nope")
    expect(grpc.StatusCode.NOT_FOUND, "Servable not found for request: Specific(tiny, 7)", predict, channel, image,
           version=7)
    expect(grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label: nope", predict, channel, image,
           label="nope")
    expect(grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not found.', predict, channel, image,
           signature="nope")
    expect(grpc.StatusCode.INVALID_ARGUMENT,
           "input size does not match signature: 0!=1 len({}) != len({image_input}). Sent extra: {}. "
           "Missing but required: {image_input}.", predict, channel, {})
    strings = tensor_proto.from_numpy(np.array([b"x"], dtype=object))
    expect(grpc.StatusCode.INVALID_ARGUMENT, "Expects arg[0] to be float but string is provided",
           predict, channel, {"image_input": strings})
    err = expect(grpc.StatusCode.INVALID_ARGUMENT, "input 'image_input' has shape [1,10], which is incompatible "
                 "with the signature's shape [?,224,224,3]", predict, channel,
                 {"image_input": tensor_proto.from_numpy(np.zeros((1, 10), np.float32))})
    assert err is not None
    short = tensor_proto.from_numpy(IMAGE)
    short.tensor_content = short.tensor_content[:-4]
    expect(grpc.StatusCode.INVALID_ARGUMENT, "tensor parsing error: image_input", predict, channel,
           {"image_input": short})
    expect(grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified.", predict, channel, image, name="")
    expect(grpc.StatusCode.INVALID_ARGUMENT, "duplicate output tensor alias: probabilities", predict, channel, image,
           output_filter=["probabilities", "probabilities"])
    expect(grpc.StatusCode.INVALID_ARGUMENT, "output tensor alias not found in signature: nope Outputs expected to "
           "be in the set {probabilities}.", predict, channel, image, output_filter=["nope"])


def test_a_message_over_the_limit_is_refused_by_grpc_and_the_server_goes_on(channel):
    big = np.zeros((7, 224, 224, 3), np.float32)  # 4.2 MB of tensor_content: over the 4 MiB limit
    request_size = len(pb.PredictRequest(model_spec=pb.ModelSpec(name="tiny"),
                                         inputs={"image_input": tensor_proto.from_numpy(big)}).SerializeToString())
    assert request_size > MAX_MESSAGE
    expect(grpc.StatusCode.RESOURCE_EXHAUSTED,
           f"SERVER: Received message larger than max ({request_size} vs. {MAX_MESSAGE})", predict, channel,
           {"image_input": tensor_proto.from_numpy(big)})
    reply = predict(channel, {"image_input": tensor_proto.from_numpy(IMAGE)})  # the next request is served
    (out,) = reply.outputs.values()
    assert tensor_proto.to_numpy(out).shape == (1, 1000)


def test_metadata_and_status_decode_with_tensorflow_serving_api(channel):
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

    request = pb.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "tiny"
    reply = call(channel, api.GET_MODEL_METADATA, request, get_model_metadata_pb2.GetModelMetadataResponse)
    assert reply.model_spec.name == "tiny" and reply.model_spec.version.value == 1
    defs = get_model_metadata_pb2.SignatureDefMap()
    assert reply.metadata["signature_def"].Unpack(defs)
    assert set(defs.signature_def) == {"serving_default", "serving_bytes"}
    info = defs.signature_def["serving_default"].inputs["image_input"]
    assert info.dtype == 1 and [d.size for d in info.tensor_shape.dim] == [-1, 224, 224, 3]
    assert info.name.endswith(":0")
    bad = pb.GetModelMetadataRequest()
    bad.model_spec.name = "tiny"
    expect(grpc.StatusCode.INVALID_ARGUMENT, "GetModelMetadataRequest must specify at least one metadata_field",
           call, channel, api.GET_MODEL_METADATA, bad, pb.GetModelMetadataResponse)

    status_req = pb.GetModelStatusRequest()
    status_req.model_spec.name = "tiny"
    status = call(channel, api.GET_MODEL_STATUS, status_req, get_model_status_pb2.GetModelStatusResponse)
    (version,) = status.model_version_status
    assert version.version == 1 and version.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    status_req.model_spec.name = "nope"
    expect(grpc.StatusCode.NOT_FOUND, "Could not find any versions of model nope",
           call, channel, api.GET_MODEL_STATUS, status_req, pb.GetModelStatusResponse)


def test_metrics_count_grpc_requests_as_tf_serving_does(server, channel):
    predict(channel, {"image_input": tensor_proto.from_numpy(IMAGE)})
    with urllib.request.urlopen(f"{server.url}/monitoring/prometheus/metrics", timeout=10) as r:
        text = r.read().decode()
    assert ':tensorflow:serving:request_latency_count{model_name="tiny",API="Predict",entrypoint="GRPC"}' in text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=256))
def test_malformed_messages_never_crash_the_server(channel, data):
    try:
        call(channel, api.PREDICT, data, pb.PredictResponse, raw=True)
    except grpc.RpcError as err:
        assert err.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                              grpc.StatusCode.FAILED_PRECONDITION), err.details()


def test_server_survives_the_fuzzing(channel):
    assert predict(channel, {"image_input": tensor_proto.from_numpy(IMAGE)}).outputs
