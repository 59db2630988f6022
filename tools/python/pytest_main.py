"""Entry point of every `py_pytest` target: run pytest on the given files under Bazel."""

import os
import sys


def main() -> int:
    import pytest

    args = ["-p", "no:cacheprovider", "-q", "-rfEs"]
    if "XML_OUTPUT_FILE" in os.environ:
        args.append(f"--junitxml={os.environ['XML_OUTPUT_FILE']}")
    if "TEST_TMPDIR" in os.environ:
        args.append(f"--basetemp={os.path.join(os.environ['TEST_TMPDIR'], 'pytest')}")
    return pytest.main(args + sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
