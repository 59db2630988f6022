"""A request body's big numeric array without one Python object per number.

The common `:predict` body is a small JSON object around one large, regular array of plain
numbers: `{"signature_name": "...", "instances": [[[[0, 12, 255], ...]]]}`. Python's json
module spends tens of ms on a ResNet50 image (one object per pixel), more than the model.

`parse(body, decode)` finds that member (`instances` or `inputs` of the top-level object),
proves with vectorised numpy checks that its text is a valid JSON array of JSON numbers,
regular (rectangular, every leaf at the same depth, no empty list), and parses the numbers
with numpy in C. The rest of the body (with `[]` in place of the array) goes through the
exact parser `decode`. The result is a `LazyDoc`: a dict equal to what the exact parser
gives, whose array member is turned into Python lists only when something reads it as
Python values; `pending` holds the numpy form for the fast tensor conversion.

Anything it cannot prove (other tokens, mixed integer/decimal literals, integers of more
than 18 characters, non-finite decimals, nesting deeper than 64, a prefix that is not plain
`"key": scalar` members, a duplicated key, ...) gives None: the caller parses the whole
body exactly, so accepted bodies, errors and offsets are the exact parser's.

When the array is the object's last member (the usual body), simdjson (C, SIMD) validates
and converts it in one pass instead; the numpy checks are the path for the other bodies.
Both prove the same things (a regular array of JSON numbers, all integer literals or all
decimals), so which one ran never changes the result.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import simdjson

# Byte classes of the array text.
_OTHER, _WS, _OPEN, _CLOSE, _COMMA, _DIGIT, _MINUS, _PLUS, _DOT, _EXP = range(10)
_CLASS = np.zeros(256, np.uint8)
for _chars, _cls in ((b" \t\n\r", _WS), (b"[", _OPEN), (b"]", _CLOSE), (b",", _COMMA), (b"0123456789", _DIGIT),
                     (b"-", _MINUS), (b"+", _PLUS), (b".", _DOT), (b"eE", _EXP)):
    _CLASS[list(_chars)] = _cls
del _chars, _cls
_CLASS_TABLE = _CLASS.tobytes()  # for bytes.translate: one C pass, no index array

_WS_RE = rb"[ \t\n\r]*"
_STRING_RE = rb'"(?:[^"\\]|\\.)*"'
# The body up to the array: '{' and zero or more `"name": scalar,` members (JSON lexing from
# the first byte, so the key found is a member name of the top-level object, not text in a
# string). The exact parser checks the details (escapes, number syntax) on the remainder.
_PREFIX_RE = re.compile(
    _WS_RE + rb"\{" + _WS_RE
    + rb"(?:" + _STRING_RE + _WS_RE + rb":" + _WS_RE
    + rb"(?:" + _STRING_RE + rb"|[-+.0-9eE]+|true|false|null)" + _WS_RE + rb"," + _WS_RE + rb")*"
    + rb'"(instances|inputs)"' + _WS_RE + rb":" + _WS_RE + rb"\["
)
_FIRST_NUMBER_RE = re.compile(rb"[\[ \t\n\r]*[-0-9]")  # an array whose first leaf may be a number
_KEY_RE = re.compile(rb'"(?:instances|inputs)"' + _WS_RE + rb":" + _WS_RE + rb"\[")
MAX_PREFIX = 4096  # bytes before the array; longer prefixes take the exact parser
MAX_INT_CHARS = 18  # integer literals up to 18 characters fit int64 exactly
MAX_RANK = 64  # deeper nesting takes the exact parser (Python's json has a recursion limit)
_SEPARATORS = bytes.maketrans(b"[],", b"   ")
_INTEGER_CHARS = b"0123456789-+ \t\n\r"  # deleted from an array's text: its skeleton and decimal marks are left
_DECIMAL_MARKS = b".eE"


@dataclasses.dataclass(frozen=True, eq=False)
class NumericArray:
    """The array member, parsed: `values` is flat integers (all literals integers) or float64 (all decimals)."""

    key: str
    shape: tuple[int, ...]
    values: np.ndarray
    text: bytes  # the array's JSON text, for turning it into Python values

    @property
    def integers(self) -> bool:
        return self.values.dtype.kind == "i"

    def to_python(self) -> list:
        """Exactly what the JSON parser makes of the text (the text is pure ASCII numbers and brackets)."""
        return json.loads(self.text)


@functools.lru_cache(maxsize=4)
def _skeleton(shape: tuple[int, ...], open_: bytes, comma: bytes, close: bytes) -> bytes:
    """A regular array's brackets and commas (numbers and whitespace left out)."""
    out = open_ + comma * (shape[-1] - 1) + close
    for size in reversed(shape[:-1]):
        out = open_ + comma.join([out] * size) + close
    return out


def _scan(body: bytes) -> tuple[int, int, NumericArray] | None:
    """(start, end, parsed) of the member's array text body[start:end], or None."""
    found = _KEY_RE.search(body, 0, MAX_PREFIX)
    if found is None:
        return None
    prefix = _PREFIX_RE.match(body, 0, found.end())
    if prefix is None or prefix.end() != found.end():
        return None
    key = prefix.group(1).decode()
    start = found.end() - 1
    if not _FIRST_NUMBER_RE.match(body, start):
        return None  # its first leaf is no number (b64 objects, strings, ...): neither scanner takes it
    end = body.rfind(b"]") + 1
    if body[end:].strip(b" \t\n\r") == b"}":  # the last member: what simdjson refuses, numpy refuses too
        return _scan_last(body, start, key)
    return _scan_marks(body, start, key)


def _scan_marks(body: bytes, start: int, key: str) -> tuple[int, int, NumericArray] | None:
    """The array starting at body[start], wherever it ends, through vectorised numpy checks."""
    raw = np.frombuffer(body, np.uint8, offset=start)
    cls = np.frombuffer(body.translate(_CLASS_TABLE), np.uint8, offset=start)
    stop = np.flatnonzero(cls == _OTHER)
    if stop.size:
        cls, raw = cls[: stop[0]], raw[: stop[0]]
    # Structural characters ('[', ']', ','): the array ends where the bracket depth returns to 0.
    where = np.flatnonzero((cls - np.uint8(_OPEN)) <= np.uint8(_COMMA - _OPEN))  # (wraps below _OPEN)
    marks = cls[where]
    step = (marks == _OPEN).astype(np.int32)
    step -= marks == _CLOSE
    depth = np.cumsum(step, dtype=np.int32)
    closed = depth == 0
    last = int(np.argmax(closed))
    if not closed[last]:
        return None
    end = int(where[last]) + 1
    parsed = _numbers(cls[:end], raw[:end], where[: last + 1], marks[: last + 1], depth[: last + 1], key,
                      body[start : start + end])
    if parsed is None:
        return None
    return start, start + end, parsed


def _scan_last(body: bytes, start: int, key: str) -> tuple[int, int, NumericArray] | None:
    """The array starting at body[start] when it is the last member (only `}` after it), through simdjson.

    simdjson accepts exactly the JSON grammar (no NaN, no leading zeros, no trailing
    commas, ...); a document that is one value from its first to its last byte is the whole
    array. Deleting the number characters and whitespace leaves its skeleton, which must be
    the regular one of its shape, with as many numbers as the shape has (a list of one
    number and an empty one look alike); and every literal has a '.' or an exponent, or none.
    """
    end = body.rfind(b"]") + 1
    if end <= start or body[end:].strip(b" \t\n\r") != b"}":
        return None
    text = body[start:end]
    try:
        # A parser per body: a kept one holds its largest document's buffers (0.8 GB after a
        # 60 MB body); making one costs nothing measurable beside the parse.
        array = simdjson.Parser().parse(text)
        dims = []
        node = array
        while isinstance(node, simdjson.Array):
            if len(node) == 0 or len(dims) == MAX_RANK:
                return None
            dims.append(len(node))
            node = node[0]
        shape, count = tuple(dims), math.prod(dims)
        skeleton = text.translate(None, _INTEGER_CHARS)
        regular = _skeleton(shape, b"[", b",", b"]")
        decimals = 0
        if skeleton != regular:
            decimals = (skeleton.count(b".") + skeleton.count(b"e") + skeleton.count(b"E")
                        - skeleton.count(b".e") - skeleton.count(b".E"))  # literals with a '.', an exponent or both
            if not decimals or skeleton.translate(None, _DECIMAL_MARKS) != regular:
                return None
        if decimals == 0:
            values = np.frombuffer(array.as_buffer(of_type="i"), np.int64)
        elif decimals == count:
            values = np.frombuffer(array.as_buffer(of_type="d"), np.float64)
        else:
            return None  # integer and decimal literals mixed
    except (ValueError, TypeError, RuntimeError):  # not JSON, a literal beyond int64/float64, or not a number
        return None
    if values.size != count:
        return None  # an empty list where the shape has one number ("[[1], []]" has a regular skeleton)
    return start, end, NumericArray(key=key, shape=shape, values=values, text=text)


def _numbers(cls, raw, where, marks, depth, key: str, text: bytes) -> NumericArray | None:
    """The array text's numbers, if it is a regular JSON array of JSON numbers (`where`: its marks' positions)."""
    # The shape from the first list at each depth: its marks span length[k], and in a regular
    # array that is shape[k] lists of length[k + 1] with commas between, in brackets. Then the
    # marks must be exactly those of a regular array of that shape.
    rank = int(np.argmax(marks != _OPEN))
    if not 1 <= rank <= MAX_RANK:
        return None
    length = [len(marks)]  # the outermost list: all of it
    for k in range(1, rank):
        length.append(int(np.argmax(depth[k + 1 :] == k)) + 2)  # it opens at k, closes where depth is back to k
    shape = []
    for k in range(rank - 1):
        size, rest = divmod(length[k] - 1, length[k + 1] + 1)
        if rest or size < 1:
            return None
        shape.append(size)
    shape.append(int(np.argmax(marks[rank:] == _CLOSE)) + 1)  # commas before the first ']', plus one
    shape = tuple(shape)
    if marks.tobytes() != _skeleton(shape, bytes([_OPEN]), bytes([_COMMA]), bytes([_CLOSE])):
        return None
    # Between two marks: one number after '[' or ',' and before ',' or ']', else nothing but
    # whitespace. The numbers are the runs of number characters.
    slot = (marks[:-1] != _CLOSE) & (marks[1:] != _OPEN)
    if not (cls == _WS).any():
        if not np.array_equal(np.diff(where) > 1, slot):
            return None
        slots = np.flatnonzero(slot)
        starts = where[slots] + 1
        ends = where[slots + 1] - 1
    else:
        edges = np.diff((cls >= _DIGIT).view(np.int8), prepend=np.int8(0), append=np.int8(0))
        starts = np.flatnonzero(edges == 1)
        ends = np.flatnonzero(edges == -1) - 1
        if not np.array_equal(np.searchsorted(where, starts) - 1, np.flatnonzero(slot)):
            return None  # a number outside a slot, or two in one ("1 2")
    count = starts.size
    # Each number is a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
    # Every '-', '+', '.', 'e' must sit where the grammar allows it, followed by a digit (or
    # an exponent's sign), so a number starts with a digit or '-' and ends with a digit.
    special = np.flatnonzero(cls > _DIGIT)
    decimal = False
    negative = None
    if special.size:
        here, before, after = cls[special], cls[special - 1], cls[special + 1]
        after_digit = after == _DIGIT
        ok = np.select(
            [here == _MINUS, here == _PLUS, here == _DOT],
            [((before < _DIGIT) | (before == _EXP)) & after_digit,  # a number's sign or the exponent's
             (before == _EXP) & after_digit,
             (before == _DIGIT) & after_digit],
            (before == _DIGIT) & (after_digit | (after == _MINUS) | (after == _PLUS)),  # e E
        )
        if not ok.all():
            return None
        signs = special[(here == _MINUS) & (before < _DIGIT)]
        if np.any((raw[signs + 1] == ord("0")) & (cls[signs + 2] == _DIGIT)):
            return None  # leading zero after a sign ("-01"; a sign is followed by a digit, then ']' at the latest)
        negative = np.zeros(count, bool)
        negative[np.searchsorted(starts, signs)] = True
        token = np.searchsorted(starts, special, side="right") - 1
        dots, exps = here == _DOT, here == _EXP
        dot_token, exp_token = token[dots], token[exps]
        if np.any(np.diff(dot_token) == 0) or np.any(np.diff(exp_token) == 0):
            return None  # two '.' or two exponents in one number
        dot_at = np.full(count, -1)
        dot_at[dot_token] = special[dots]
        exp_at = np.full(count, np.iinfo(np.int64).max)
        exp_at[exp_token] = special[exps]
        if np.any(dot_at > exp_at):
            return None  # '.' in the exponent
        decimals = np.zeros(count, bool)
        decimals[dot_token] = True
        decimals[exp_token] = True
        if decimals.all():
            decimal = True
        elif decimals.any():
            return None  # integer and decimal literals mixed: Python makes ints and floats
    # Leading zero: a '0' after a non-number character, followed by a digit.
    if np.any((raw[1:-1] == ord("0")) & (cls[:-2] < _DIGIT) & (cls[2:] == _DIGIT)):
        return None
    if decimal:
        values = _parse_text(text, np.float64, count)
        if values is not None and not np.all(np.isfinite(values)):
            return None  # literals beyond float64's range
    else:
        values = _parse_integers(raw, starts, ends, negative, text)
    if values is None:
        return None
    return NumericArray(key=key, shape=shape, values=values, text=text)


def _parse_integers(raw, starts, ends, negative, text: bytes) -> np.ndarray | None:
    """Checked integer literals raw[starts:ends + 1] ('-' where `negative`) as an integer array."""
    digits = ends - starts + 1
    if negative is not None:
        digits -= negative
    width = int(digits.max())
    if width > MAX_INT_CHARS:
        return None
    if width > 9:
        return _parse_text(text, np.int64, starts.size)
    values = np.take(raw, ends).astype(np.int32) - ord("0")
    scale = 1
    for back in range(1, width):
        scale *= 10
        digit = np.take(raw, ends - back) - np.uint8(ord("0"))
        digit[digits <= back] = 0
        values += digit.astype(np.int32) * scale
    if negative is not None:
        np.negative(values, out=values, where=negative)
    return values


def _parse_text(text: bytes, dtype, count: int) -> np.ndarray | None:
    """numpy's C number parser over the checked text (brackets and commas as spaces)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            values = np.fromstring(text.translate(_SEPARATORS), dtype=dtype, sep=" ")
        except (ValueError, DeprecationWarning):
            return None
    return values if values.size == count else None


class LazyDoc(dict):
    """The top-level JSON object; the array member becomes Python lists when first read.

    `pending` is the member's numpy form until then (None afterwards). `in`, `len` and
    `keys()` never convert; reading the member's value, iterating, comparing, copying or
    changing the dict does.
    """

    pending: NumericArray | None = None

    def __init__(self, members: dict[str, Any], pending: NumericArray) -> None:
        super().__init__(members)
        self.pending = pending
        dict.__setitem__(self, pending.key, pending)

    def materialize(self) -> None:
        pending = self.pending
        if pending is not None:
            dict.__setitem__(self, pending.key, pending.to_python())
            self.pending = None

    def __getitem__(self, key):
        if self.pending is not None and key == self.pending.key:
            self.materialize()
        return dict.__getitem__(self, key)

    def get(self, key, default=None):
        if self.pending is not None and key == self.pending.key:
            self.materialize()
        return dict.get(self, key, default)


def _materializing(name: str):
    base = getattr(dict, name)

    def method(self, *args, **kwargs):
        self.materialize()
        return base(self, *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method


for _name in ("items", "values", "__iter__", "__reversed__", "__eq__", "__ne__", "__repr__", "copy", "pop",
              "popitem", "setdefault", "update", "__setitem__", "__delitem__", "clear", "__or__", "__ror__",
              "__ior__", "__reduce_ex__", "__reduce__"):
    setattr(LazyDoc, _name, _materializing(_name))
del _name


def parse(body: bytes, decode: Callable[[bytes, Callable[[list], None]], Any]) -> LazyDoc | None:
    """The body as a LazyDoc, or None when the fast path cannot prove it equal to `decode(body)`.

    `decode(text, on_object)` is the exact parser (bytes -> the top-level dict), calling
    `on_object` with each object's (name, value) pairs; any exception it raises on the
    remainder means None.
    """
    scanned = _scan(body)
    if scanned is None:
        return None
    start, end, parsed = scanned
    pairs: list[list[tuple[str, Any]]] = []
    remainder = body[:start] + b"[]" + body[end:]
    try:
        doc = decode(remainder, pairs.append)
    except Exception:  # any failure: the exact parser decides on the whole body
        return None
    if not isinstance(doc, dict) or not pairs:
        return None
    top = pairs[-1]  # the outermost object is completed last
    if [value for name, value in top if name == parsed.key] != [[]] or len(top) != len(doc):
        return None  # the key twice (or never) at the top level
    return LazyDoc(doc, parsed)
