"""TF Serving's JSON <-> tensor rules: the fast path agrees with the exact walk; output shapes."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving import fast_json
from serving import json_tensor as jt
from serving.json_tensor import ApiError

FLOAT = {"x": "DT_FLOAT"}


def _predict(doc, dtypes=FLOAT, fast=True):
    body = json.dumps(doc, allow_nan=True).encode()
    return jt.predict_tensors(jt.parse_body(body), dtypes, body, fast=fast)


def _outcome(doc, fast):
    try:
        result = _predict(doc, fast=fast)
    except ApiError as err:
        return ("error", err.code, err.message)
    return ("ok", result.row_format, {k: (v.dtype.str, v.shape, v.tobytes()) for k, v in result.tensors.items()})


numbers = st.integers(-(2**25), 2**25) | st.floats(allow_nan=False, width=32) | st.booleans() | st.just("s")
nested = st.recursive(numbers, lambda c: st.lists(c, min_size=0, max_size=3), max_leaves=16)
# Mostly regular arrays (the fast path's case), sometimes mixed.
regular = st.integers(1, 3).flatmap(
    lambda n: st.lists(st.lists(st.floats(-1e6, 1e6, width=32) | st.integers(-1000, 1000), min_size=2, max_size=2),
                       min_size=n, max_size=n)
)


@settings(max_examples=300, deadline=None, database=None)
@given(value=nested | regular, key=st.sampled_from(["instances", "inputs"]))
def test_fast_path_gives_exactly_the_exact_walks_answer(value, key):
    doc = {key: value}
    assert _outcome(doc, fast=True) == _outcome(doc, fast=False)


def test_row_and_columnar_tensors():
    r = _predict({"instances": [[1, 2.5], [3, 4]]})
    assert r.row_format and r.tensors["x"].dtype == np.float32 and r.tensors["x"].shape == (2, 2)
    c = _predict({"inputs": {"x": [[1]], "unused": 3}})
    assert not c.row_format and c.tensors["x"].shape == (1, 1)


def test_named_instances_with_several_inputs():
    dtypes = {"a": "DT_FLOAT", "b": "DT_STRING"}
    r = _predict({"instances": [{"a": [1.0], "b": {"b64": "aGk="}}, {"a": [2.0], "b": "yo"}]}, dtypes)
    assert r.tensors["a"].shape == (2, 1) and list(r.tensors["b"]) == [b"hi", b"yo"]
    with pytest.raises(ApiError, match="instances is a plain list, but expecting list of objects"):
        _predict({"instances": [[1.0]]}, dtypes)
    with pytest.raises(ApiError, match="must only have keys: a,b"):
        _predict({"instances": [{"a": [1.0]}]}, dtypes)
    with pytest.raises(ApiError, match="Expecting object but got list at item 1"):
        _predict({"instances": [{"a": [1.0], "b": "x"}, [1]]}, dtypes)


def test_int_types_need_integers():
    with pytest.raises(ApiError, match=r"JSON Value: 1\.5 Type: Number is not of expected type: int32"):
        _predict({"inputs": [1.5]}, {"x": "DT_INT32"})
    assert _predict({"inputs": [1, -2]}, {"x": "DT_INT32"}).tensors["x"].tolist() == [1, -2]


def test_a_lone_surrogate_is_a_400_never_a_500():
    # JSON allows "\ud800"; UTF-8 cannot encode it. Found by test_malformed_bodies_never_yield_500.
    body = b'{"instances": ["\\ud800"]}'
    doc = jt.parse_body(body)
    with pytest.raises(ApiError, match="The surrogate pair in string is invalid"):
        _predict(doc, {"x": "DT_STRING"})
    with pytest.raises(ApiError) as err:  # a float input quotes the value in its message
        _predict(doc, {"x": "DT_FLOAT"})
    assert "\\ud800" in jt.error_body(err.value.message).decode()


def test_format_predict_shapes():
    one = {"probabilities": np.array([[0.1, 0.2]], np.float32)}
    assert jt.format_predict(one, row_format=True) == {"predictions": [[0.1, 0.2]]}
    assert jt.format_predict(one, row_format=False) == {"outputs": [[0.1, 0.2]]}
    two = {"a": np.array([1, 2]), "b_bytes": np.array([b"x", b"y"], dtype=object)}
    assert jt.format_predict(two, row_format=True) == {
        "predictions": [{"a": 1, "b_bytes": {"b64": "eA=="}}, {"a": 2, "b_bytes": {"b64": "eQ=="}}]
    }
    assert jt.format_predict(two, row_format=False) == {"outputs": {"a": [1, 2], "b_bytes": [{"b64": "eA=="},
                                                                                              {"b64": "eQ=="}]}}


def test_floats_are_written_at_float32_precision_with_nan_and_infinity():
    out = jt.format_predict({"y": np.array([0.1, 1.0, np.nan, -np.inf], np.float32)}, row_format=False)
    assert jt.dumps(out) == b'{"outputs":[0.1,1.0,NaN,-Infinity]}'


def _random_output(draw, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Any bit pattern of the dtype (floats: NaN, infinities, subnormals, -0.0 included)."""
    n = int(np.prod(shape))
    if dtype == "object":
        return np.array([draw(st.binary(max_size=4)) for _ in range(n)], dtype=object).reshape(shape)
    itemsize = np.dtype(dtype).itemsize
    raw = draw(st.binary(min_size=n * itemsize, max_size=n * itemsize))
    return np.frombuffer(raw, dtype).reshape(shape).copy()


def _canonical(body: bytes) -> str:
    """The JSON values of a body (repr keeps -0.0, 1 vs 1.0; NaN and Infinity as their names)."""
    return json.dumps(json.loads(body, parse_constant=str))


@settings(max_examples=300, deadline=None, database=None)
@given(data=st.data(), row_format=st.booleans(), names=st.sampled_from([["y"], ["a", "b"], ["a", "b_bytes"]]),
       batch=st.integers(1, 3), inner=st.sampled_from([(), (2,), (3, 1)]))
def test_predict_body_has_the_json_values_of_the_exact_formatting(data, row_format, names, batch, inner):
    dtypes = st.sampled_from(["float32", "float64", "float16", "int64", "int8", "uint64", "uint8", "bool", "object"])
    outputs = {n: _random_output(data.draw, data.draw(dtypes), (batch, *inner)) for n in names}
    if data.draw(st.booleans()):  # mostly finite floats, the usual outputs
        outputs = {n: np.nan_to_num(a) if a.dtype.kind == "f" else a for n, a in outputs.items()}
    assert _canonical(jt.predict_body(outputs, row_format)) == _canonical(jt.dumps(jt.format_predict(outputs,
                                                                                                     row_format)))


def test_predict_body_writes_finite_numeric_outputs_with_orjson(monkeypatch):
    calls = []
    real = jt.orjson.dumps
    monkeypatch.setattr(jt.orjson, "dumps", lambda *a, **k: calls.append(1) or real(*a, **k))
    probabilities = np.array([[0.1, 1e-5, 3.4028235e38]], np.float32)
    assert json.loads(jt.predict_body({"p": probabilities}, True)) == {"predictions": [[0.1, 1e-5, 3.4028235e38]]}
    assert json.loads(jt.predict_body({"p": probabilities[:, ::2], "c": np.array([7])}, False)) == {
        "outputs": {"c": [7], "p": [[0.1, 3.4028235e38]]}}  # a strided view, ints beside
    assert len(calls) == 2
    assert jt.predict_body({"p": np.array([np.nan], np.float32)}, True) == b'{"predictions":[NaN]}'
    assert jt.predict_body({"p": np.array([0.1], np.float16)}, True) == b'{"predictions":[0.1]}'
    assert len(calls) == 2  # NaN and float16: the exact formatting


def test_error_body_is_pretty_with_four_spaces():
    assert jt.error_body("boom") == b'{\n    "error": "boom"\n}'


def test_base64_accepts_web_safe_and_unpadded():
    assert jt.decode_b64({"b64": "aGk"}) == b"hi"
    assert jt.decode_b64({"b64": "_-8="}) == b"\xff\xef"
    with pytest.raises(ApiError, match="Unable to base64 decode"):
        jt.decode_b64({"b64": "a"})


@pytest.mark.parametrize("separators", [(",", ":"), (", ", ": ")])
@pytest.mark.parametrize("key", ["instances", "inputs"])
def test_resnet_sized_pixel_body_is_parsed_by_numpy_to_the_exact_tensor(separators, key):
    pixels = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3))
    doc = {"signature_name": "serving_default", key: pixels.tolist()}
    body = json.dumps(doc, separators=separators).encode()
    fast_doc = jt.parse_body(body)
    assert isinstance(fast_doc, fast_json.LazyDoc)
    fast = jt.predict_tensors(fast_doc, {"image": "DT_FLOAT"}, body)
    assert fast_doc.pending is not None  # no Python list was made
    exact = jt.predict_tensors(jt.parse_body(body, fast=False), {"image": "DT_FLOAT"}, body, fast=False)
    assert fast.row_format == exact.row_format == (key == "instances")
    a, b = fast.tensors["image"], exact.tensors["image"]
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape == (2, 224, 224, 3) and np.array_equal(a, b)
    assert fast_doc == doc and fast_doc.pending is None  # reading it as Python gives the same values


def test_errors_after_a_fast_parse_are_the_exact_ones():
    body = json.dumps({"instances": [[1, 2]], "inputs": [[3, 4]]}).encode()
    for dtypes in ({"x": "DT_FLOAT"}, {"x": "DT_FLOAT", "y": "DT_FLOAT"}, {}):
        messages = []
        for fast in (True, False):
            with pytest.raises(ApiError) as err:
                jt.predict_tensors(jt.parse_body(body, fast=fast), dtypes, body, fast=fast)
            messages.append(err.value.message)
        assert messages[0] == messages[1]


def test_the_smallest_int64_is_not_a_float32_and_takes_the_exact_error():
    with pytest.raises(ApiError, match="Cannot convert JSON value: -9223372036854775808 to float"):
        _predict({"instances": [-(2**63)]})
