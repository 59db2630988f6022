"""TensorProto <-> numpy, as TensorFlow's Tensor::FromProto / AsProtoTensorContent do it.

Works on ``serving.tfs_messages_pb2`` (wire-compatible with TF's own messages) and
imports neither TensorFlow nor gRPC, so the generator can build requests with it and
the local server can read them. A proto that TF would refuse raises ``ApiError``
(INVALID_ARGUMENT) with the message TF Serving answers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from serving import tfs_messages_pb2 as pb
from serving.errors import ApiError


@dataclasses.dataclass(frozen=True)
class DType:
    """One TF DataType: its enum name and number, the numpy dtype, the typed value field."""

    name: str
    number: int
    numpy: np.dtype
    field: str  # TensorProto's *_val field for this dtype


def _d(name: str, np_dtype, field: str) -> DType:
    return DType(name, pb.DataType.Value(name), np.dtype(np_dtype), field)


DTYPES: tuple[DType, ...] = (
    _d("DT_FLOAT", np.float32, "float_val"),
    _d("DT_DOUBLE", np.float64, "double_val"),
    _d("DT_INT32", np.int32, "int_val"),
    _d("DT_UINT8", np.uint8, "int_val"),
    _d("DT_INT16", np.int16, "int_val"),
    _d("DT_INT8", np.int8, "int_val"),
    _d("DT_UINT16", np.uint16, "int_val"),
    _d("DT_INT64", np.int64, "int64_val"),
    _d("DT_BOOL", np.bool_, "bool_val"),
    _d("DT_HALF", np.float16, "half_val"),
    _d("DT_UINT32", np.uint32, "uint32_val"),
    _d("DT_UINT64", np.uint64, "uint64_val"),
    _d("DT_COMPLEX64", np.complex64, "scomplex_val"),
    _d("DT_COMPLEX128", np.complex128, "dcomplex_val"),
    _d("DT_STRING", object, "string_val"),
)
BY_NUMBER = {d.number: d for d in DTYPES}
BY_NAME = {d.name: d for d in DTYPES}
_BY_NUMPY = {d.numpy: d for d in DTYPES if d.name != "DT_STRING"}


def _invalid(message: str) -> ApiError:
    return ApiError("INVALID_ARGUMENT", message)


def shape_of(proto: pb.TensorProto) -> tuple[int, ...]:
    """The proto's shape; unknown rank or a negative dimension is refused (a request's tensor is concrete)."""
    shape = proto.tensor_shape
    if shape.unknown_rank:
        raise _invalid("tensor parsing error: unknown rank")
    dims = tuple(d.size for d in shape.dim)
    if any(d < 0 for d in dims):
        raise _invalid(f"tensor parsing error: negative dimension in shape {list(dims)}")
    return dims


def to_numpy(proto: pb.TensorProto) -> np.ndarray:
    """A request's TensorProto as an array: ``tensor_content`` (little-endian bytes) or the
    typed field. As Tensor::FromProto: fewer values than elements repeat the last one (one
    value fills the tensor), none give zeros, extra values are dropped; a content size
    that is not the shape's is an error."""
    dtype = BY_NUMBER.get(proto.dtype)
    if dtype is None:
        name = pb.DataType.Name(proto.dtype) if proto.dtype in pb.DataType.values() else str(proto.dtype)
        raise _invalid(f"tensor parsing error: tensor has unsupported dtype {name}")
    shape = shape_of(proto)
    n = math.prod(shape)
    if dtype.name == "DT_STRING":
        values = np.empty(len(proto.string_val), dtype=object)
        values[:] = list(proto.string_val)
        return _fill(values, n, shape)
    if proto.tensor_content:
        want = n * dtype.numpy.itemsize
        if len(proto.tensor_content) != want:
            raise _invalid(f"tensor parsing error: tensor has {len(proto.tensor_content)} bytes of tensor_content, "
                           f"its shape {list(shape)} of {dtype.name} needs {want}")
        return np.frombuffer(proto.tensor_content, dtype=dtype.numpy.newbyteorder("<")).astype(
            dtype.numpy, copy=False).reshape(shape)
    values = getattr(proto, dtype.field)
    if dtype.name == "DT_HALF":
        arr = np.array(values, dtype=np.uint16).view(np.float16)
    elif dtype.field in ("scomplex_val", "dcomplex_val"):
        flat = np.array(values, dtype=np.float32 if dtype.field == "scomplex_val" else np.float64)
        if flat.size % 2:
            raise _invalid("tensor parsing error: tensor has an odd count of complex parts")
        arr = flat[0::2] + 1j * flat[1::2]
        arr = arr.astype(dtype.numpy)
    else:
        arr = np.array(values, dtype=dtype.numpy)
    return _fill(arr, n, shape)


def _fill(values: np.ndarray, n: int, shape: tuple[int, ...]) -> np.ndarray:
    if len(values) >= n:
        return values[:n].reshape(shape)
    out = np.empty(n, dtype=values.dtype)
    out[:len(values)] = values
    out[len(values):] = values[-1] if len(values) else (b"" if values.dtype == object else 0)
    return out.reshape(shape)


def dtype_of(array: np.ndarray) -> DType:
    if array.dtype == object or array.dtype.kind in "SU":
        return BY_NAME["DT_STRING"]
    dtype = _BY_NUMPY.get(array.dtype)
    if dtype is None:
        raise ValueError(f"no TF DataType for numpy dtype {array.dtype}")
    return dtype


def _shape(into: pb.TensorShapeProto, dims: Sequence[int]) -> None:
    for d in dims:
        into.dim.add().size = int(d)


def from_numpy(array: np.ndarray, *, content: bool = True) -> pb.TensorProto:
    """An array as a TensorProto: numeric types as ``tensor_content`` (little-endian), as
    TF Serving answers (``content=False``: the typed field); strings as ``string_val``."""
    array = np.asarray(array)
    dtype = dtype_of(array)
    proto = pb.TensorProto(dtype=dtype.number)
    _shape(proto.tensor_shape, array.shape)
    if dtype.name == "DT_STRING":
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1))
    elif content:
        proto.tensor_content = np.ascontiguousarray(array, dtype=dtype.numpy.newbyteorder("<")).tobytes()
    elif dtype.name == "DT_HALF":
        proto.half_val.extend(array.reshape(-1).view(np.uint16).astype(np.int32).tolist())
    elif dtype.field in ("scomplex_val", "dcomplex_val"):
        flat = array.reshape(-1)
        getattr(proto, dtype.field).extend(np.stack([flat.real, flat.imag], axis=1).reshape(-1).tolist())
    else:
        getattr(proto, dtype.field).extend(array.reshape(-1).tolist())
    return proto
