"""fast_json: whatever the fast path accepts, the exact parser accepts identically (doc, tensors, errors)."""

import copy
import json
import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving import fast_json
from serving import json_tensor as jt
from serving.json_tensor import ApiError

DTYPES = ["DT_FLOAT", "DT_DOUBLE", "DT_INT8", "DT_UINT8", "DT_INT32", "DT_INT64", "DT_UINT64", "DT_BOOL",
          "DT_STRING"]


def _outcome(body: bytes, dtypes: dict[str, str], fast: bool):
    """What the server does with the body: the parsed doc (types included), the tensors, or the error."""
    try:
        doc = jt.parse_body(body, fast=fast)
        jt.signature_name(doc)
        result = jt.predict_tensors(doc, dtypes, body, fast=fast)
        tensors = {k: (v.dtype.str, v.shape, v.tolist() if v.dtype == object else v.tobytes())
                   for k, v in result.tensors.items()}
        outcome = ("ok", result.row_format, tensors)
    except ApiError as err:
        outcome = ("error", err.code, err.message)
    except Exception as err:  # the server would answer 500: must match too
        outcome = ("crash", type(err).__name__, str(err))
    try:
        canonical = json.dumps(jt.parse_body(body, fast=fast), allow_nan=True)  # repr keeps 1 vs 1.0, -0.0
    except ApiError as err:
        canonical = err.message
    return outcome, canonical


def _fast_taken(body: bytes, dtypes: dict[str, str]) -> bool:
    """Whether the server's steps succeed with the numpy form, never making Python lists."""
    doc = fast_json.parse(body, jt._parse_exact)
    if doc is None:
        return False
    try:
        jt.signature_name(doc)
        jt.predict_tensors(doc, dtypes, body)
    except Exception:
        return False
    return doc.pending is not None


def _same(body: bytes, dtypes: dict[str, str]) -> None:
    assert _outcome(body, dtypes, fast=True) == _outcome(body, dtypes, fast=False)


# --- generated regular arrays ---------------------------------------------------------------

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4)
ints = st.integers(-(2**24), 2**24) | st.integers(0, 255) | st.integers(-(2**63), 2**64)
floats = (st.floats(allow_nan=False, allow_infinity=False) | st.floats(width=32, allow_nan=False, allow_infinity=False)
          | st.floats(-1, 1) | st.sampled_from([0.0, -0.0, 5e-324, 1e-310, 3.4028235e38, 3.5e38, 1e16, 1e22, 1e23]))
leaf_kinds = st.sampled_from(["int", "float", "mixed"])
separators = st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", "\t:\r\n")])


def _build(shape, leaves):
    it = iter(leaves)

    def level(dims):
        if not dims:
            return next(it)
        return [level(dims[1:]) for _ in range(dims[0])]

    return level(shape)


@st.composite
def bodies(draw):
    shape = draw(shapes)
    n = math.prod(shape)
    kind = draw(leaf_kinds)
    leaf = {"int": ints, "float": floats, "mixed": ints | floats}[kind]
    array = _build(shape, draw(st.lists(leaf, min_size=n, max_size=n)))
    key = draw(st.sampled_from(["instances", "inputs"]))
    members = {}
    if draw(st.booleans()):
        members["signature_name"] = draw(st.sampled_from(["serving_default", "", 'q"uo\\te', "ü"]))
    if draw(st.booleans()):
        members["extra"] = draw(st.sampled_from([1, 2.5, None, True, "x"]))
    order = draw(st.sampled_from(["first", "last"]))
    doc = {key: array, **members} if order == "first" else {**members, key: array}
    indent = draw(st.sampled_from([None, None, 1]))
    text = json.dumps(doc, separators=draw(separators), indent=indent)
    return (draw(st.sampled_from(["", " ", "\n"])) + text + draw(st.sampled_from(["", " ", "junk"]))).encode()


@settings(max_examples=400, deadline=None, database=None)
@given(body=bodies(), dtype=st.sampled_from(DTYPES), two_inputs=st.booleans())
def test_generated_bodies_agree_with_the_exact_parser(body, dtype, two_inputs):
    dtypes = {"x": dtype, "y": "DT_FLOAT"} if two_inputs else {"x": dtype}
    _same(body, dtypes)


@settings(max_examples=150, deadline=None, database=None)
@given(shape=shapes, data=st.data(), key=st.sampled_from(["instances", "inputs"]), sep=separators)
def test_regular_pixel_arrays_take_the_fast_path(shape, data, key, sep):
    leaves = data.draw(st.lists(st.integers(0, 255), min_size=math.prod(shape), max_size=math.prod(shape)))
    body = json.dumps({"signature_name": "serving_default", key: _build(shape, leaves)}, separators=sep).encode()
    dtypes = {"image": data.draw(st.sampled_from(["DT_FLOAT", "DT_DOUBLE", "DT_INT32", "DT_UINT8", "DT_INT64"]))}
    assert _fast_taken(body, dtypes)
    assert _scanners(body)[0] is not None  # the last member: simdjson's path
    fast, exact = _outcome(body, dtypes, fast=True), _outcome(body, dtypes, fast=False)
    assert fast == exact and fast[0][0] == "ok"


def _scanners(body: bytes):
    """What each scanner makes of the body's array: (simdjson's, numpy's), each None or comparable."""
    found = fast_json._KEY_RE.search(body, 0, fast_json.MAX_PREFIX)
    if found is None or fast_json._PREFIX_RE.match(body, 0, found.end()) is None:
        return None, None
    key, start = fast_json._PREFIX_RE.match(body).group(1).decode(), found.end() - 1

    def comparable(scanned):
        if scanned is None:
            return None
        begin, end, parsed = scanned
        values = parsed.values.astype(np.int64 if parsed.integers else np.float64)
        return begin, end, parsed.key, parsed.shape, parsed.integers, values.tobytes(), parsed.text

    return (comparable(fast_json._scan_last(body, start, key)), comparable(fast_json._scan_marks(body, start, key)))


# --- generated number text and damaged bodies -----------------------------------------------

number_text = st.text(alphabet="0123456789-+.eE", min_size=1, max_size=8)


@settings(max_examples=400, deadline=None, database=None)
@given(tokens=st.lists(number_text, min_size=1, max_size=6), nested=st.booleans(), dtype=st.sampled_from(DTYPES))
def test_any_number_text_agrees_with_the_exact_parser(tokens, nested, dtype):
    row = "[" + ",".join(tokens) + "]"
    array = f"[{row},{row}]" if nested else row
    _same(f'{{"instances": {array}}}'.encode(), {"x": dtype})


@settings(max_examples=400, deadline=None, database=None)
@given(data=st.data(), dtype=st.sampled_from(["DT_FLOAT", "DT_INT32"]))
def test_damaged_bodies_agree_with_the_exact_parser(data, dtype):
    body = bytearray(b'{"signature_name": "serving_default", "instances": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]}')
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(body)))
        action = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        char = data.draw(st.sampled_from(list(b'[],{}":0123456789-+.eE \t\nabtrufsnlNIx\\')))
        if action == "insert":
            body[at:at] = bytes([char])
        elif at < len(body):
            body[at:at + 1] = bytes([char]) if action == "replace" else b""
    _same(bytes(body), {"x": dtype})


@settings(max_examples=400, deadline=None, database=None)
@given(body=bodies() | st.builds(lambda t: f'{{"instances": [{t}, [{t}]]}}'.encode(), number_text))
def test_simdjson_and_numpy_scanners_agree(body):
    last, marks = _scanners(body)
    if last is not None and marks is None:  # numpy's limit: integer literals up to 18 characters
        literals = last[6].translate(None, b"[]").split(b",")
        assert last[4] and max(len(t.strip(b" \t\n\r-")) for t in literals) > fast_json.MAX_INT_CHARS
    elif last is not None:
        assert last == marks
    elif marks is not None:
        assert body[marks[1]:].strip(b" \t\n\r") != b"}"  # numpy's path only where the array is not last


# --- cases written out ------------------------------------------------------------------------

FALLBACK = [
    b'{"instances": [[1, 2], [3]]}',  # ragged
    b'{"instances": [[1, 2], 3]}',
    b'{"instances": [[1, 2], [3, [4]]]}',
    b'{"instances": [[1]2,[3]]}',  # a number outside a slot (brackets and commas alone look regular)
    b'{"instances": [[1] 2, [3]]}',
    b'{"instances": [[1],[3]4]}',
    b'{"instances": [1,]}',
    b'{"instances": [,1]}',
    b'{"instances": [[1, 2.5]]}',  # int and decimal literals mixed
    b'{"instances": [[]]}',
    b'{"instances": [[0], []]}',  # the skeleton of a regular [[0], [0]]
    b'{"instances": [[[1]], [[]]]}',
    b'{"instances": []}',
    b'{"instances": [01]}',
    b'{"instances": [-01]}',
    b'{"instances": [1.]}',
    b'{"instances": [.5]}',
    b'{"instances": [+1]}',
    b'{"instances": [1e]}',
    b'{"instances": [1.5e3.2]}',
    b'{"instances": [1e5.3]}',
    b'{"instances": [1+2, 1]}',
    b'{"instances": [1.5+2]}',
    b'{"instances": [1 2]}',
    b'{"instances": [1,,2]}',
    b'{"instances": [1,2,]}',
    b'{"instances": [-]}',
    b'{"instances": [NaN]}',
    b'{"instances": [Infinity, 1]}',
    b'{"instances": [1e400]}',
    b'{"instances": [123456789012345678901]}',
    b'{"instances": [true, 1]}',
    b'{"instances": [{"b64": "aGk="}]}',
    b'{"instances": [["a", 1]]}',
    b'{"instances": [1, 2], "instances": [3, 4]}',  # duplicate key: Python keeps the last
    b'{"\\u0069nstances": [9], "instances": [3, 4]}',
    b'{"instances": [1, 2], "inputs": [3]}',
    b'{"signature_name": "\\"instances\\": [1, 2]", "instances": []}',  # the key inside a string
    b'{"signature_name": 5, "instances": [1]}',
    b'{"a": {"b": 1}, "instances": [1]}',
    b'[{"instances": [1]}]',
    b'{"instances": [1, 2]',  # unterminated
    b'{} {"instances": [1]}',
    b'\xef\xbb\xbf{"instances": [1]}',
    b'{"instances": ' + b'[' * 3000 + b'1' + b']' * 3000 + b'}',  # Python: nesting too deep
    b'{"instances": ' + b'[' * 65 + b'1' + b']' * 65 + b'}',
]


@pytest.mark.parametrize("body", FALLBACK)
@pytest.mark.parametrize("dtype", ["DT_FLOAT", "DT_INT32", "DT_STRING"])
def test_unusual_bodies_get_the_exact_answer(body, dtype):
    _same(body, {"x": dtype})


@pytest.mark.parametrize("body", FALLBACK)
def test_unusual_bodies_are_not_taken_by_the_fast_path(body):
    assert not _fast_taken(body, {"x": "DT_FLOAT"})


@pytest.mark.parametrize("body, dtype, expected", [
    (b'{"instances": [[1, -2], [0, -0]]}', "DT_FLOAT", [[1, -2], [0, 0]]),
    (b'{"inputs": [1.5e2, -0.0, 1E-2, 2e+1]}', "DT_DOUBLE", [150.0, -0.0, 0.01, 20.0]),
    (b' {"instances":[[255]], "signature_name":"serving_default"} trailing', "DT_UINT8", [[255]]),
    (b'{"x": null, "y": true, "instances": [7]}', "DT_INT64", [7]),
])
def test_fast_path_values(body, dtype, expected):
    assert _fast_taken(body, {"x": dtype})
    tensor = jt.predict_tensors(jt.parse_body(body), {"x": dtype}, body).tensors["x"]
    assert tensor.dtype == jt.NUMPY_DTYPES[dtype] and tensor.tolist() == expected
    assert np.signbit(tensor).tolist() == np.signbit(np.asarray(expected, tensor.dtype)).tolist()
    _same(body, {"x": dtype})


@pytest.mark.parametrize("body, dtype", [
    (b'{"instances": [16777216]}', "DT_FLOAT"),  # 2^24: lossy as float
    (b'{"instances": [1.5]}', "DT_INT32"),
    (b'{"instances": [300]}', "DT_INT8"),  # TF accepts any int32; numpy would overflow
    (b'{"instances": [-1]}', "DT_UINT64"),
    (b'{"instances": [1e39]}', "DT_FLOAT"),
    (b'{"instances": [1]}', "DT_BOOL"),
])
def test_values_the_exact_walk_refuses_are_left_to_it(body, dtype):
    assert not _fast_taken(body, {"x": dtype})
    _same(body, {"x": dtype})


def test_lazy_doc_is_the_exact_doc():
    body = b'{"signature_name": "s", "instances": [[1, 2], [3, 4]], "z": 1.5}'
    exact = jt.parse_body(body, fast=False)
    doc = jt.parse_body(body)
    assert isinstance(doc, fast_json.LazyDoc) and doc.pending.shape == (2, 2)
    assert "instances" in doc and len(doc) == 3 and list(doc.keys()) == list(exact)
    assert doc["signature_name"] == "s" and doc.pending is not None  # other members: no conversion
    assert json.dumps(doc) == json.dumps(exact) and doc.pending is None
    for read in (dict, lambda d: d.get("instances"), lambda d: d["instances"], lambda d: list(d.items()),
                 lambda d: list(d.values()), repr, jt.value_to_string, lambda d: d.copy(), lambda d: d == exact,
                 lambda d: exact == d, lambda d: {**d}, lambda d: [*d], copy.deepcopy,
                 lambda d: pickle.loads(pickle.dumps(d))):
        fresh = jt.parse_body(body)
        result = read(fresh)
        assert fresh.pending is None and dict.__getitem__(fresh, "instances") == [[1, 2], [3, 4]]
        assert result == read(exact)


def test_classify_style_errors_print_the_whole_doc():
    body = b'{"signature_name": 3, "instances": [1, 2]}'
    with pytest.raises(ApiError) as fast:
        jt.signature_name(jt.parse_body(body))
    with pytest.raises(ApiError) as exact:
        jt.signature_name(jt.parse_body(body, fast=False))
    assert fast.value.message == exact.value.message and "[\n        1,\n        2\n    ]" in fast.value.message
