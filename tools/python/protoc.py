"""`protoc` for the build: grpcio-tools' compiler with the well-known types on its path.

Used by genrules (serving/BUILD: tfs_messages_py) as ``$(location //tools/python:protoc)
-I. --python_out=$(GENDIR) FILE.proto``; the arguments are protoc's.
"""

from __future__ import annotations

import sys
from importlib import resources


def main(argv: list[str]) -> int:
    from grpc_tools import protoc

    well_known = resources.files("grpc_tools") / "_proto"
    return protoc.main(["protoc", *argv, f"-I{well_known}"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
