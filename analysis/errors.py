"""The one exception analysis raises for bad input; its message names the offending file."""

from __future__ import annotations


class ResultsError(Exception):
    """Input files are missing, malformed or of a schema this reader does not know."""
