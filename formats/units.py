"""The one grammar for durations and fractions, used by every flag and every spec field.

A duration is a number with an optional unit: ``250ms``, ``1.5s``, ``.5s``, ``5m``,
``1h``. A bare number means **seconds**, everywhere (flags and YAML alike); a latency
option is still given as a duration (``--max-send-lag 2ms``), and ``parse_duration_ms``
returns it in milliseconds. A fraction is ``1%`` or ``0.01``.
"""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
DURATION_HELP = "a duration such as 250ms, 1.5s, 5m or 1h (a bare number is seconds)"


class UnitError(ValueError):
    """A value that does not follow the grammar; the message says what was expected."""


def parse_duration(value: str | int | float, *, positive: bool = False) -> float:
    """``value`` in seconds. Refuses negative, non-finite and unparsable values, and 0 when
    ``positive``."""
    if isinstance(value, bool):
        raise UnitError(f"bad duration {value!r}: use {DURATION_HELP}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise UnitError(f"bad duration {value!r}: use {DURATION_HELP}")
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if not math.isfinite(seconds) or seconds < 0:
        raise UnitError(f"bad duration {value!r}: must be a finite number >= 0")
    if positive and seconds == 0:
        raise UnitError(f"bad duration {value!r}: must be > 0")
    return seconds


def parse_duration_ms(value: str | int | float, *, positive: bool = False) -> float:
    """``parse_duration`` in milliseconds (``"5ms"`` -> 5.0, ``"1"`` -> 1000.0)."""
    return parse_duration(value, positive=positive) * 1000.0


def parse_fraction(value: str | int | float) -> float:
    """``"1%"`` -> 0.01, ``"0.5%"`` -> 0.005, ``0.01`` -> 0.01; must lie in [0, 1)."""
    text = str(value).strip()
    try:
        fraction = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise UnitError(f"bad fraction {value!r}: use e.g. 1% or 0.01") from None
    if isinstance(value, bool) or not 0.0 <= fraction < 1.0:
        raise UnitError(f"bad fraction {value!r}: must be in [0, 100%)")
    return fraction
