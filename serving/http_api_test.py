"""Conformance of the local server with TF Serving's REST API, over real HTTP on 127.0.0.1.

Every case of the REST section of the TF Serving reference: routing, status codes, error
strings and JSON shapes. One server (tiny model, batching off) is shared by the module.
"""

import base64
import http.client
import json
import math
import urllib.parse

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.config import ServingConfig
from serving.conftest import start_server

IMAGE = [[[0.5, 1.0, 2.0]] * 224] * 224  # one 224x224x3 instance
PNG_1x1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    config = ServingConfig(model_name="tiny", intra_op=1, inter_op=1, version_labels=(("stable", 1),))
    srv = start_server(config, tiny_model, tmp_path_factory.mktemp("srv"), local=True, max_body_bytes=4 * 2**20)
    yield srv
    assert srv.stop() == 0  # graceful exit


class Client:
    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)

    def __call__(self, method, path, body=None, headers=None):
        if isinstance(body, str):
            body = body.encode()
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.conn.request(method, path, body=body, headers=headers or {})
        r = self.conn.getresponse()
        data = r.read()
        return r.status, r.getheader("Content-Type", ""), data


@pytest.fixture
def call(server):
    client = Client(server.url)
    yield client
    client.conn.close()


def error_of(data):
    return json.loads(data)["error"]


def expect_error(call, method, path, body, status, message, *, exact=True):
    got_status, ctype, data = call(method, path, body)
    assert got_status == status, data
    assert ctype.startswith("application/json")
    err = error_of(data)
    if exact:
        assert err == message
    else:
        assert message in err, err
    return err


# --- routing ------------------------------------------------------------------------------


def test_paths_outside_v1_get_libevents_html_404(call):
    status, ctype, data = call("GET", "/")
    assert status == 404 and ctype.startswith("text/html") and b"<H1>Not Found</H1>" in data
    assert call("POST", "/models/tiny:predict", {"instances": [1]})[0] == 404


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/v1/models/tiny:predict"),
        ("POST", "/v1/models/tiny/metadata"),
        ("GET", "/v1/models/tiny/version/1"),
        ("GET", "/v1/models/tiny/versions/HELLO"),
        ("GET", "/v1/models/tiny/versions/1/labels/stable"),
        ("PUT", "/v1/models/tiny:predict"),
        ("DELETE", "/v1/models/tiny"),
        ("POST", "/v1/models/tiny:explain"),
        ("GET", "/v1/foo"),
    ],
)
def test_malformed_requests(call, method, path):
    expect_error(call, method, path, None, 400, f"Malformed request: {method} {path}")


def test_missing_model_name_and_unconvertible_version(call):
    expect_error(call, "GET", "/v1/models", None, 400, "Missing model name in request.")
    big = "9" * 20
    expect_error(call, "GET", f"/v1/models/tiny/versions/{big}", None, 400, f"Failed to convert version: {big}")


def test_routing_is_case_insensitive_and_names_are_url_decoded(call):
    status, ctype, data = call("GET", "/V1/MODELS/ti%6Ey")
    assert status == 200 and ctype.startswith("application/json")
    assert json.loads(data)["model_version_status"][0]["state"] == "AVAILABLE"


# --- status and metadata ----------------------------------------------------------------------


def test_model_status_body_is_tf_servings(call):
    for path in ("/v1/models/tiny", "/v1/models/tiny/versions/1", "/v1/models/tiny/labels/stable"):
        status, _, data = call("GET", path)
        assert status == 200
        assert data.decode() == (
            '{\n "model_version_status": [\n  {\n   "version": "1",\n   "state": "AVAILABLE",\n'
            '   "status": {\n    "error_code": "OK",\n    "error_message": ""\n   }\n  }\n ]\n}'
        )


def test_model_status_errors(call):
    expect_error(call, "GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope")
    expect_error(call, "GET", "/v1/models/tiny/versions/7", None, 404, "Could not find version 7 of model tiny")
    expect_error(call, "GET", "/v1/models/tiny/labels/canary", None, 400, "Unrecognized servable version label: canary")


def test_metadata(call):
    status, _, data = call("GET", "/v1/models/tiny/versions/1/metadata")
    assert status == 200
    body = json.loads(data)
    assert body["model_spec"] == {"name": "tiny", "signature_name": "", "version": "1"}
    sigs = body["metadata"]["signature_def"]["signature_def"]
    assert set(sigs) == {"serving_default", "serving_bytes"}
    image = sigs["serving_default"]["inputs"]["image_input"]
    assert image["dtype"] == "DT_FLOAT" and image["name"].endswith(":0")
    assert image["tensor_shape"] == {
        "dim": [{"size": "-1", "name": ""}, {"size": "224", "name": ""}, {"size": "224", "name": ""},
                {"size": "3", "name": ""}],
        "unknown_rank": False,
    }
    assert sigs["serving_default"]["method_name"] == "tensorflow/serving/predict"
    assert sigs["serving_bytes"]["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    expect_error(call, "GET", "/v1/models/nope/metadata", None, 404, "Servable not found for request: Latest(nope)")


# --- predict: success ---------------------------------------------------------------------------


def test_predict_row_and_columnar_formats(call):
    status, ctype, data = call("POST", "/v1/models/tiny:predict", {"instances": [IMAGE, IMAGE]})
    assert status == 200 and ctype.startswith("application/json")
    rows = json.loads(data)["predictions"]
    assert len(rows) == 2 and len(rows[0]) == 1000 and rows[0] == rows[1]
    assert math.isclose(sum(rows[0]), 1.0, rel_tol=1e-3)
    status, _, data = call("POST", "/v1/models/tiny/versions/1:predict", {"inputs": [IMAGE]})
    cols = json.loads(data)["outputs"]
    assert status == 200 and np.allclose(cols[0], rows[0], rtol=1e-5)
    named = call("POST", "/v1/models/tiny/labels/stable:predict", {"inputs": {"image_input": [IMAGE]}})
    assert named[0] == 200 and np.allclose(json.loads(named[2])["outputs"][0], rows[0], rtol=1e-5)


def test_predict_b64_bytes_signature(call):
    b64 = {"b64": base64.b64encode(PNG_1x1).decode()}
    status, _, data = call("POST", "/v1/models/tiny:predict", {"signature_name": "serving_bytes", "instances": [b64]})
    assert status == 200, data
    assert len(json.loads(data)["predictions"][0]) == 1000
    status, _, data = call("POST", "/v1/models/tiny:predict", {"signature_name": "serving_bytes", "inputs": [b64]})
    assert status == 200 and len(json.loads(data)["outputs"]) == 1


def test_trailing_garbage_is_ignored_and_nan_accepted(call):
    body = json.dumps({"inputs": [IMAGE]}) + " trailing garbage"
    assert call("POST", "/v1/models/tiny:predict", body)[0] == 200
    nan_image = json.dumps({"instances": [IMAGE]}).replace("0.5", "NaN", 1)
    status, _, data = call("POST", "/v1/models/tiny:predict", nan_image)
    assert status == 200 and len(json.loads(data)["predictions"][0]) == 1000


# --- predict: errors --------------------------------------------------------------------------

P = "/v1/models/tiny:predict"


@pytest.mark.parametrize(
    "body, message",
    [
        ("", "JSON Parse error: The document is empty"),
        ("x", "JSON Parse error: Invalid value. at offset: 0"),
        ('{"instances": [1,', "JSON Parse error: Invalid value. at offset: 17"),
        ("{", "JSON Parse error: Missing a name for object member. at offset: 1"),
        ('{"a" 1}', "JSON Parse error: Missing a colon after a name of object member. at offset: 5"),
        ('{"a": 1 "b": 2}', "JSON Parse error: Missing a comma or '}' after an object member. at offset: 8"),
        ("[1]", "JSON Value: [\n    1\n] Is not object"),
        ("7", "JSON Value: 7 Is not object"),
        ('{"signature_name": 3, "instances": [1]}',
         "JSON Value: {\n    \"signature_name\": 3,\n    \"instances\": [\n        1\n    ]\n} not formatted correctly."
         " 'signature_name' key must be a string value."),
        ('{"signature_name": "foo", "instances": [1]}', 'Serving signature name: "foo" not found in signature def'),
        ('{"instances": [1], "inputs": [1]}',
         "JSON Value: {\n    \"instances\": [\n        1\n    ],\n    \"inputs\": [\n        1\n    ]\n} Not formatted "
         "correctly expecting only one of 'inputs' or 'instances' keys to exist "),
        ('{"instances": 1}', "JSON Value: {\n    \"instances\": 1\n} Expecting 'instances' to be an list/array"),
        ('{"instances": []}', "JSON Value: {\n    \"instances\": []\n} No values in 'instances' array"),
        ('{"signature_name": ""}', "Missing 'inputs' or 'instances' key"),
        ('{"instances": ["x"]}',
         "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: \"x\" Type: String "
         "is not of expected type: float"),
        ('{"instances": [true]}',
         "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: true Type: True "
         "is not of expected type: float"),
        ('{"inputs": [[1, 2], [3]]}', "Encountered list at unexpected size: 1 at level: 1 expected size: 2"),
        ('{"instances": [[1, 2], [3]]}',
         "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Expecting tensor size: 2 but "
         "got: 1"),
        ('{"instances": [[1, 2], [3, [4]]]}',
         "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Encountered list at unexpected "
         "level: 1 expected < 1"),
        ('{"instances": [[1], 2]}',
         "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Expecting shape [1] but got: []"),
        ('{"instances": [16777217]}',
         "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: Cannot convert JSON value: "
         "16777217 to float without loss of precision."),
        ('{"inputs": {"other": [1]}}', "Missing named input: image_input in 'inputs' object."),
        ('{"signature_name": "serving_bytes", "instances": [{"b64": "%%%"}]}',
         "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: Unable to base64 decode"),
        ('{"signature_name": "serving_bytes", "inputs": [{"b64": "%%%"}]}', "Unable to base64 decode"),
        ('{"signature_name": "serving_bytes", "inputs": [{"b64": 1}]}',
         "JSON Value: {\n    \"b64\": 1\n} not formatted correctly for base64 data"),
    ],
)
def test_predict_error_strings(call, body, message):
    expect_error(call, "POST", P, body, 400, message)


def test_wrong_shape_fails_in_the_runtime_with_400(call):
    status, _, data = call("POST", P, {"instances": [[1.0, 2.0, 3.0]]})
    assert status == 400 and "image_input" in error_of(data)


def test_json_is_checked_before_the_model_is_looked_up(call):
    expect_error(call, "POST", "/v1/models/nope:predict", "{", 400, "JSON Parse error", exact=False)
    expect_error(call, "POST", "/v1/models/nope:predict", "{}", 404, "Servable not found for request: Latest(nope)")
    expect_error(call, "POST", "/v1/models/tiny/versions/7:predict", {"instances": [1]}, 404,
                 "Servable not found for request: Specific(tiny, 7)")
    expect_error(call, "POST", "/v1/models/tiny/labels/canary:predict", {"instances": [1]}, 400,
                 "Unrecognized servable version label: canary")


def test_classify_and_regress_on_a_predict_signature(call):
    ex = {"examples": [{"x": 1.0}]}
    expect_error(call, "POST", "/v1/models/tiny:classify", ex, 400,
                 "Expected classification signature method_name to be tensorflow/serving/classify. "
                 "Was: tensorflow/serving/predict")
    expect_error(call, "POST", "/v1/models/tiny:regress", ex, 400,
                 "Expected regression signature method_name to be tensorflow/serving/regress. "
                 "Was: tensorflow/serving/predict")
    expect_error(call, "POST", "/v1/models/tiny:classify", {"signature_name": "nope", **ex}, 400,
                 "No signature was found with the name: nope")
    expect_error(call, "POST", "/v1/models/tiny:classify", "{}", 400,
                 "JSON Value: {} When method is classify, key 'examples' is expected and was not found")
    expect_error(call, "POST", "/v1/models/nope:classify", ex, 404, "Servable not found for request: Latest(nope)")


def test_oversized_body_is_refused_with_413(call):
    status, ctype, data = call("POST", P, b"[" + b"0," * (3 * 2**20) + b"0]")
    assert status == 413 and ctype.startswith("application/json")
    assert "larger than the server's limit of 4194304 bytes" in error_of(data)
    assert call("GET", "/v1/models/tiny")[0] == 200  # and the server is fine


def test_metrics_use_tf_serving_names(call):
    call("POST", P, {"instances": [IMAGE]})
    call("POST", "/v1/models/nope:predict", "{}")
    status, ctype, data = call("GET", "/monitoring/prometheus/metrics")
    text = data.decode()
    assert status == 200 and ctype.startswith("text/plain")
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert ':tensorflow:serving:request_count{model_name="nope",status="NOT_FOUND"}' in text
    ok = [line for line in text.splitlines() if line.startswith(':tensorflow:serving:request_count{model_name="tiny",'
                                                                 'status="OK"}')]
    assert ok and int(ok[0].split()[-1]) >= 1
    assert "# TYPE :tensorflow:serving:request_latency histogram" in text
    labels = 'model_name="tiny",API="predict",entrypoint="REST"'
    assert f":tensorflow:serving:request_latency_bucket{{{labels},le=\"10\"}}" in text
    assert f":tensorflow:serving:request_latency_bucket{{{labels},le=\"+Inf\"}}" in text
    assert f":tensorflow:serving:request_latency_count{{{labels}}}" in text


# --- malformed bodies never give a 500 ------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["instances", "inputs", "signature_name", "b64", "image_input", "x"]),
                      children, max_size=3),
    max_leaves=12,
)
request_docs = st.fixed_dictionaries(
    {},
    optional={
        "instances": json_values,
        "inputs": json_values,
        "signature_name": st.sampled_from(["serving_default", "serving_bytes", "", "nope"]) | json_values,
    },
)


def _encode(doc):
    return json.dumps(doc, allow_nan=True).encode()


bodies = (
    st.binary(max_size=64)
    | json_values.map(_encode)
    | request_docs.map(_encode)
    | st.tuples(request_docs.map(_encode), st.integers(0, 40), st.binary(max_size=3)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1]:]
    )
)


@settings(max_examples=250, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(body=bodies, path=st.sampled_from([P, "/v1/models/tiny:classify", "/v1/models/tiny/versions/1:predict"]))
def test_malformed_bodies_never_yield_500(server, body, path):
    client = Client(server.url)
    try:
        status, ctype, data = client("POST", path, body)
    finally:
        client.conn.close()
    assert status in (200, 400, 404, 501), (status, data)
    assert ctype.startswith("application/json")
    if status != 200:
        assert isinstance(error_of(data), str)


def test_server_survives_the_fuzzing(call, server):
    assert call("GET", "/v1/models/tiny")[0] == 200
    assert server.proc.poll() is None
