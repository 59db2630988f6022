"""A request TF Serving refuses, by either protocol: its status code name and message."""

from __future__ import annotations


class ApiError(Exception):
    """A request TF Serving refuses: absl status code name and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> ApiError:
    return ApiError("INVALID_ARGUMENT", message)
