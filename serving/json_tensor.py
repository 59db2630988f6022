"""TF Serving's JSON <-> tensor rules (tensorflow_serving/util/json_tensor.cc), in Python.

`parse_body` and `predict_tensors` reproduce the checks, their order and their error
strings; `format_predict` writes responses in the same shapes. Every failure is an
`ApiError` carrying the absl status code that TF Serving would return. Large numeric
payloads take numpy fast paths that accept exactly what the exact walk accepts (they fall
back to the exact walk for anything they cannot prove valid, so errors are always TF's):
`fast_json` parses a body's big regular array of numbers without Python objects per
number, and `np.array` converts nested lists that were parsed the ordinary way.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import orjson

from serving import fast_json
from serving.errors import ApiError, invalid

FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOAT_INT_LIMIT = (1 << 24) - 1  # integers a float32 / float64 holds exactly
_DOUBLE_INT_LIMIT = (1 << 53) - 1
_INT_LIMITS = {
    "DT_INT8": (-(2**31), 2**31 - 1),  # TF Serving checks IsInt(): any int32
    "DT_INT16": (-(2**31), 2**31 - 1),
    "DT_UINT8": (-(2**31), 2**31 - 1),
    "DT_INT32": (-(2**31), 2**31 - 1),
    "DT_INT64": (-(2**63), 2**63 - 1),
    "DT_UINT32": (0, 2**32 - 1),
    "DT_UINT64": (0, 2**64 - 1),
}
NUMPY_DTYPES = {
    "DT_FLOAT": np.float32,
    "DT_DOUBLE": np.float64,
    "DT_INT8": np.int8,
    "DT_INT16": np.int16,
    "DT_UINT8": np.uint8,
    "DT_INT32": np.int32,
    "DT_INT64": np.int64,
    "DT_UINT32": np.uint32,
    "DT_UINT64": np.uint64,
    "DT_BOOL": np.bool_,
    "DT_STRING": object,
}
# DataTypeString(): the name TF prints in messages.
TYPE_NAMES = {
    "DT_FLOAT": "float", "DT_DOUBLE": "double", "DT_INT8": "int8", "DT_INT16": "int16", "DT_UINT8": "uint8",
    "DT_INT32": "int32", "DT_INT64": "int64", "DT_UINT32": "uint32", "DT_UINT64": "uint64", "DT_BOOL": "bool",
    "DT_STRING": "string",
}


# --- JSON values as rapidjson prints them -----------------------------------------------


def type_name(v: Any) -> str:
    if v is None:
        return "Null"
    if v is True:
        return "True"
    if v is False:
        return "False"
    if isinstance(v, dict):
        return "Object"
    if isinstance(v, list):
        return "Array"
    if isinstance(v, str):
        return "String"
    return "Number"


def _decimal(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "-Infinity" if v < 0 else "Infinity"
    text = repr(v)
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def value_to_string(v: Any) -> str:
    """JsonValueToString: rapidjson's PrettyWriter (4-space indent), decimals as WriteDecimal."""
    if isinstance(v, float):
        return _decimal(v)
    return json.dumps(v, indent=4, separators=(",", ": "), ensure_ascii=False)


# --- parsing the body -------------------------------------------------------------------

_PY_TO_RAPIDJSON = (
    ("Expecting value", "Invalid value."),
    ("Expecting property name enclosed in double quotes", "Missing a name for object member."),
    ("Expecting ':' delimiter", "Missing a colon after a name of object member."),
    ("Expecting ',' delimiter", "Missing a comma or ']' after an array element."),
    ("Unterminated string", "Missing a closing quotation mark in string."),
    ("Invalid \\escape", "Invalid escape character in string."),
    ("Invalid \\uXXXX escape", "Incorrect hex digit after \\u escape in string."),
    ("Invalid control character", "Invalid encoding in string."),
)


def _reject_constant(name: str) -> float:
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[name]


def parse_body(body: bytes, *, fast: bool = True) -> dict[str, Any]:
    """ParseJson: empty -> 'document is empty', syntax errors with offset, top level must be an object.

    As with rapidjson's kParseStopWhenDoneFlag, anything after the first complete value is ignored.
    A body around one big regular numeric array comes back as a `fast_json.LazyDoc` (equal to
    the exact parse; `fast=False` forces the exact parse).
    """
    if fast:
        doc = fast_json.parse(body, _parse_exact)
        if doc is not None:
            return doc
    return _parse_exact(body)


def _parse_exact(body: bytes, on_object: Callable[[list], None] | None = None) -> dict[str, Any]:
    """The exact parse; `on_object` sees each object's (name, value) pairs, innermost first."""
    if not body:
        raise invalid("JSON Parse error: The document is empty")
    text = body.decode("utf-8", errors="replace")
    start = len(text) - len(text.lstrip(" \t\n\r"))
    if start == len(text):
        raise invalid(f"JSON Parse error: The document is empty at offset: {start}")
    hook = None
    if on_object is not None:
        def hook(pairs: list) -> dict:
            on_object(pairs)
            return dict(pairs)
    decoder = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=hook)
    try:
        doc, _end = decoder.raw_decode(text, start)
    except json.JSONDecodeError as err:
        message = "Invalid value."
        for prefix, rapid in _PY_TO_RAPIDJSON:
            if err.msg.startswith(prefix):
                message = rapid
                break
        if err.msg.startswith("Expecting ',' delimiter") and _in_object(text, err.pos):
            message = "Missing a comma or '}' after an object member."
        raise invalid(f"JSON Parse error: {message} at offset: {err.pos}") from None
    except RecursionError:
        raise invalid(f"JSON Parse error: Nesting too deep at offset: {start}") from None
    if not isinstance(doc, dict):
        raise invalid(f"JSON Value: {value_to_string(doc)} Is not object")
    return doc


def _in_object(text: str, pos: int) -> bool:
    """Whether the innermost open bracket before `pos` is '{' (strings skipped)."""
    stack, in_string, escaped = [], False, False
    for ch in text[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            stack.append(ch)
        elif ch in "]}" and stack:
            stack.pop()
    return bool(stack) and stack[-1] == "{"


def signature_name(doc: Mapping[str, Any]) -> str:
    """FillSignature: optional 'signature_name', which must be a string ('' = default)."""
    if "signature_name" not in doc:
        return ""
    name = doc["signature_name"]
    if not isinstance(name, str):
        raise invalid(
            f"JSON Value: {value_to_string(doc)} not formatted correctly. 'signature_name' key must be a string value."
        )
    return name


# --- values -> tensors (the exact walk) ---------------------------------------------------


def is_b64(v: Any) -> bool:
    return isinstance(v, dict) and len(v) == 1 and isinstance(v.get("b64"), str)


def decode_b64(v: Any) -> bytes:
    if not is_b64(v):
        raise invalid(f"JSON Value: {value_to_string(v)} not formatted correctly for base64 data")
    text = v["b64"]
    try:
        data = text.encode("ascii")
        # absl::Base64Unescape accepts both alphabets and missing padding.
        data = data.replace(b"-", b"+").replace(b"_", b"/")
        data += b"=" * (-len(data.rstrip(b"=")) % 4 if not data.endswith(b"=") else 0)
        return base64.b64decode(data, validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise invalid("Unable to base64 decode") from None


def _type_error(v: Any, dtype: str) -> ApiError:
    return invalid(
        f"JSON Value: {value_to_string(v)} Type: {type_name(v)} is not of expected type: {TYPE_NAMES.get(dtype, dtype)}"
    )


def _convert(v: Any, dtype: str) -> Any:
    """AddValueToTensor for one leaf."""
    if dtype in ("DT_FLOAT", "DT_DOUBLE"):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _type_error(v, dtype)
        single = dtype == "DT_FLOAT"
        if isinstance(v, int):
            if abs(v) > (_FLOAT_INT_LIMIT if single else _DOUBLE_INT_LIMIT):
                target = "float" if single else "double"
                raise invalid(f"Cannot convert JSON value: {v} to {target} without loss of precision.")
        elif single and math.isfinite(v) and abs(v) > FLOAT32_MAX:  # a Python float always fits a double
            raise invalid(f"Cannot convert JSON value: {value_to_string(v)} to float without loss of precision.")
        return float(v)
    if dtype in _INT_LIMITS:
        lo, hi = _INT_LIMITS[dtype]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise _type_error(v, dtype)
        return v
    if dtype == "DT_STRING":
        if not isinstance(v, str):
            raise _type_error(v, dtype)
        try:
            return v.encode("utf-8", errors="surrogateescape")
        except UnicodeEncodeError:  # a lone \ud800-style escape: RapidJSON refuses it when parsing
            raise invalid("JSON Parse error: The surrogate pair in string is invalid.") from None
    if dtype == "DT_BOOL":
        if not isinstance(v, bool):
            raise _type_error(v, dtype)
        return v
    raise ApiError(
        "UNIMPLEMENTED", f"Conversion of JSON Value: {value_to_string(v)} to type: {TYPE_NAMES.get(dtype, dtype)}"
    )


def _dense_shape(v: Any) -> list[int]:
    shape = []
    while isinstance(v, list):
        shape.append(len(v))
        if not v:
            break
        v = v[0]
    return shape


def _fill(v: Any, level: int, shape: list[int], dtype: str, out: list[Any]) -> None:
    """FillTensorProto: leaves at depth == rank, lists of the first element's size at each level."""
    rank = len(shape)
    if not isinstance(v, list):
        if level != rank:
            raise invalid(
                f"JSON Value: {value_to_string(v)} found at incorrect level: {level + 1} in the JSON DOM. "
                f"Expected at level: {rank}"
            )
        if isinstance(v, dict):
            if dtype != "DT_STRING":
                raise _type_error(v, dtype)
            out.append(decode_b64(v))
        else:
            out.append(_convert(v, dtype))
        return
    if level >= rank:
        raise invalid(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(v) != shape[level]:
        raise invalid(
            f"Encountered list at unexpected size: {len(v)} at level: {level} expected size: {shape[level]}"
        )
    for item in v:
        _fill(item, level + 1, shape, dtype, out)


def _to_array(values: list[Any], shape: list[int], dtype: str) -> np.ndarray:
    if dtype == "DT_STRING":
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        return arr.reshape(shape)
    return np.asarray(values, dtype=NUMPY_DTYPES[dtype]).reshape(shape)


def _fast_numeric(value: Any, dtype: str, body_has_bool: bool) -> np.ndarray | None:
    """numpy conversion when it provably matches the exact walk; None means "use the exact walk"."""
    if dtype != "DT_FLOAT" or body_has_bool or not isinstance(value, list):
        return None
    try:
        arr = np.array(value)
    except (ValueError, TypeError, OverflowError):
        return None
    if arr.dtype.kind == "f":
        # Integer literals above 2^24 are refused as lossy; larger decimals are checked by the exact walk.
        finite = arr[np.isfinite(arr)]
        if finite.size and float(np.abs(finite).max()) > _FLOAT_INT_LIMIT:
            return None
    elif arr.dtype.kind in "iu":
        # (not np.abs: it overflows at the int64 minimum)
        if arr.size and (int(arr.max()) > _FLOAT_INT_LIMIT or int(arr.min()) < -_FLOAT_INT_LIMIT):
            return None
    else:
        return None
    if 0 in arr.shape[:-1]:
        return None  # empty inner lists: shape rules of the exact walk apply
    return arr.astype(np.float32)


def _tensor(value: Any, dtype: str, body_has_bool: bool) -> np.ndarray:
    fast = _fast_numeric(value, dtype, body_has_bool)
    if fast is not None:
        return fast
    return exact_tensor(value, dtype)


def exact_tensor(value: Any, dtype: str) -> np.ndarray:
    """One JSON value as a tensor, value by value as TF Serving does (ApiError on the first problem)."""
    shape = _dense_shape(value)
    out: list[Any] = []
    _fill(value, 0, shape, dtype, out)
    return _to_array(out, shape, dtype)


def _status_string(err: ApiError) -> str:
    return f"{err.code}: {err.message}"


def _shape_string(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


@dataclasses.dataclass(frozen=True)
class PredictInputs:
    tensors: dict[str, np.ndarray]
    row_format: bool  # "instances" (row) vs "inputs" (columnar)


def predict_tensors(
    doc: Mapping[str, Any], input_dtypes: Mapping[str, str], body: bytes, *, fast: bool = True
) -> PredictInputs:
    """The part of FillPredictRequestFromJson after the signature is known.

    `fast=False` forces the value-by-value walk (the fast path must give the same answer).
    """
    if fast and isinstance(doc, fast_json.LazyDoc) and doc.pending is not None:
        inputs = _from_pending(doc, doc.pending, input_dtypes)
        if inputs is not None:
            return inputs
    if not input_dtypes:
        raise invalid("Failed to get input map for signature: DEFAULT")
    # No bool literal anywhere in the body means no bool value can hide in a numeric array.
    body_has_bool = not fast or b"true" in body or b"false" in body
    if "instances" in doc:
        if "inputs" in doc:
            raise invalid(
                f"JSON Value: {value_to_string(doc)} Not formatted correctly expecting only one of 'inputs' or "
                "'instances' keys to exist "
            )
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise invalid(f"JSON Value: {value_to_string(doc)} Expecting 'instances' to be an list/array")
        if not instances:
            raise invalid(f"JSON Value: {value_to_string(doc)} No values in 'instances' array")
        return PredictInputs(_from_instances(instances, input_dtypes, body_has_bool), row_format=True)
    if "inputs" in doc:
        return PredictInputs(_from_inputs(doc["inputs"], input_dtypes, body_has_bool), row_format=False)
    raise invalid("Missing 'inputs' or 'instances' key")


def _from_pending(
    doc: Mapping[str, Any], pending: fast_json.NumericArray, dtypes: Mapping[str, str]
) -> PredictInputs | None:
    """The body's array parsed by numpy, when the exact walk would accept it and give the same tensor.

    Only one input, and only the array's own key: then both 'instances' (row) and 'inputs'
    (columnar) come to one conversion of the whole array. None: use the exact path.
    """
    if len(dtypes) != 1 or ("instances" in doc and "inputs" in doc):
        return None
    ((name, dtype),) = dtypes.items()
    arr = _pending_tensor(pending, dtype)
    if arr is None:
        return None
    return PredictInputs({name: arr}, row_format=pending.key == "instances")


def _pending_tensor(pending: fast_json.NumericArray, dtype: str) -> np.ndarray | None:
    """_convert's checks on the whole array at once; None where one would fail (or numpy would overflow)."""
    values = pending.values
    if dtype in ("DT_FLOAT", "DT_DOUBLE"):
        target = np.float32 if dtype == "DT_FLOAT" else np.float64
        if pending.integers:
            limit = _FLOAT_INT_LIMIT if dtype == "DT_FLOAT" else _DOUBLE_INT_LIMIT
            if int(values.max()) > limit or int(values.min()) < -limit:
                return None
        elif dtype == "DT_FLOAT" and float(np.abs(values).max()) > FLOAT32_MAX:
            return None  # (values are finite: fast_json refuses the rest)
    elif dtype in _INT_LIMITS and pending.integers:
        target = NUMPY_DTYPES[dtype]
        lo, hi = _INT_LIMITS[dtype]
        info = np.iinfo(target)
        if int(values.min()) < max(lo, info.min) or int(values.max()) > min(hi, info.max):
            return None  # an error, or numpy's OverflowError, in the exact walk
    else:
        return None
    return values.astype(target).reshape(pending.shape)


def _from_instances(instances: list[Any], dtypes: Mapping[str, str], body_has_bool: bool) -> dict[str, np.ndarray]:
    names = sorted(dtypes)
    first = instances[0]
    if not isinstance(first, dict) and len(names) > 1:
        raise invalid(
            "instances is a plain list, but expecting list of objects as multiple input tensors required as per "
            "tensorinfo_map"
        )

    def is_object(v: Any) -> bool:
        return isinstance(v, dict) and not is_b64(v)

    if not is_object(first):
        name = names[0]
        if not any(is_object(e) for e in instances):
            fast = _fast_numeric(instances, dtypes[name], body_has_bool)
            if fast is not None and fast.ndim >= 1:
                return {name: fast}
    elements_are_objects = is_object(first)
    rows: dict[str, list[np.ndarray]] = {}
    for index, elem in enumerate(instances):
        if elements_are_objects:
            if not is_object(elem):
                raise invalid(f"Expecting object but got list at item {index} of input list")
            for key, value in elem.items():
                _add_item(rows, key, value, dtypes, index, body_has_bool, keyed=True)
            if set(elem) != set(names):
                raise invalid(
                    f"Failed to process element: {index} of 'instances' list. JSON object: "
                    f"{value_to_string(elem)} must only have keys: {','.join(names)}"
                )
        else:
            if is_object(elem):
                raise invalid(f"Expecting value/list but got object at item {index} of input list")
            _add_item(rows, names[0], elem, dtypes, index, body_has_bool, keyed=False)
    return {
        name: _stack_objects(items) if items[0].dtype == object else np.stack(items)
        for name, items in rows.items()
    }


def _stack_objects(items: list[np.ndarray]) -> np.ndarray:
    out = np.empty((len(items), *items[0].shape), dtype=object)
    for i, item in enumerate(items):
        out[i, ...] = item
    return out


def _add_item(rows, name, value, dtypes, index, body_has_bool, *, keyed) -> None:
    """AddInstanceItem, with TF Serving's per-element error wrapping."""
    where = f"Failed to process element: {index} key: {name} of 'instances' list." if keyed else (
        f"Failed to process element: {index} of 'instances' list."
    )
    try:
        if name not in dtypes:
            raise invalid(f"JSON object: does not have named input: {name}")
        arr = _tensor(value, dtypes[name], body_has_bool)
        previous = rows.get(name)
        if previous:
            expected = previous[0]
            if expected.size != arr.size:
                raise invalid(f"Expecting tensor size: {expected.size} but got: {arr.size}")
            if expected.shape != arr.shape:
                raise invalid(f"Expecting shape {_shape_string(expected.shape)} but got: {_shape_string(arr.shape)}")
    except ApiError as err:
        raise invalid(f"{where} Error: {_status_string(err)}") from None
    rows.setdefault(name, []).append(arr)


def _from_inputs(value: Any, dtypes: Mapping[str, str], body_has_bool: bool) -> dict[str, np.ndarray]:
    if not isinstance(value, dict) or is_b64(value):
        if len(dtypes) > 1:
            raise invalid(
                "inputs is a plain value/list, but expecting an object as multiple input tensors required as per "
                "tensorinfo_map"
            )
        name = sorted(dtypes)[0]
        return {name: _tensor(value, dtypes[name], body_has_bool)}
    out = {}
    for name in sorted(dtypes):
        if name not in value:
            raise invalid(f"Missing named input: {name} in 'inputs' object.")
        out[name] = _tensor(value[name], dtypes[name], body_has_bool)
    return out


# --- tensors -> JSON ----------------------------------------------------------------------


def _jsonable(arr: np.ndarray, name: str) -> Any:
    if arr.dtype == object or arr.dtype.kind in "SU":
        def conv(v):
            if isinstance(v, str):
                v = v.encode()
            if name.endswith("_bytes"):
                return {"b64": base64.b64encode(v).decode("ascii")}
            return v.decode("utf-8", errors="replace")

        return np.vectorize(conv, otypes=[object])(arr).tolist() if arr.size else arr.tolist()
    if arr.dtype == np.float32 or arr.dtype == np.float16:
        # Shortest decimal that round-trips the float32 (as TF Serving's WriteDecimal), not float64 noise.
        return arr.astype(str).astype(np.float64).tolist()
    return arr.tolist()


def format_predict(outputs: Mapping[str, np.ndarray], row_format: bool,
                   convert: Callable[[np.ndarray, str], Any] = _jsonable) -> dict[str, Any]:
    """MakeJsonFromTensors: row -> {"predictions"}, columnar -> {"outputs"}; one output is unnamed.

    `convert(array, output name)` makes each output a JSON value (Python lists by default).
    """
    names = sorted(outputs)
    if row_format:
        if len(names) == 1:
            return {"predictions": convert(outputs[names[0]], names[0])}
        batch = {len(outputs[n]) for n in names}
        if len(batch) != 1:
            raise invalid("Batch size for output tensors is not the same")
        per_name = {n: convert(outputs[n], n) for n in names}
        return {"predictions": [{n: per_name[n][i] for n in names} for i in range(batch.pop())]}
    if len(names) == 1:
        return {"outputs": convert(outputs[names[0]], names[0])}
    return {"outputs": {n: convert(outputs[n], n) for n in names}}


def _orjson_writes_exactly(arr: np.ndarray) -> bool:
    """Whether orjson writes the array with the JSON values TF Serving writes: ints, bools, and
    finite float32/float64 (shortest round-trip decimals of the type, as WriteDecimal). Not
    float16 (orjson widens it first), NaN/Infinity (orjson writes null), or 0-d arrays."""
    if arr.ndim == 0:
        return False
    if arr.dtype.kind in "iub":
        return True
    return arr.dtype in (np.float32, np.float64) and bool(np.isfinite(arr).all())


def predict_body(outputs: Mapping[str, np.ndarray], row_format: bool) -> bytes:
    """The :predict response bytes: `dumps(format_predict(...))`, with numeric outputs written by orjson in C."""
    if all(_orjson_writes_exactly(arr) for arr in outputs.values()):
        doc = format_predict(outputs, row_format, lambda arr, _name: np.ascontiguousarray(arr))
        return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    return dumps(format_predict(outputs, row_format))


def dumps(obj: Any) -> bytes:
    """Response bytes; NaN and Infinity are written as TF Serving writes them."""
    return json.dumps(obj, allow_nan=True, separators=(",", ":")).encode()


def error_body(message: str) -> bytes:
    """TF Serving's error body: PrettyWriter, 4-space indent."""
    # a message may quote a client's lone surrogate (JSON allows the escape, UTF-8 does not)
    return json.dumps({"error": message}, indent=4, ensure_ascii=False).encode(errors="backslashreplace")

