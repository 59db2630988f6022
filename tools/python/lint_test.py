"""`//:lint`: ruff over every Python file of the workspace, configured by pyproject.toml."""

import os
import subprocess
import sys


def main() -> int:
    files = [arg for arg in sys.argv[1:] if arg.endswith(".py")]
    if not files:
        print("lint: no files given", file=sys.stderr)
        return 1
    cmd = [sys.executable, "-m", "ruff", "check", "--no-cache", "--config", "pyproject.toml", *files]
    result = subprocess.run(cmd, check=False, env={**os.environ, "RUFF_NO_CACHE": "true"})
    print(f"lint: ruff checked {len(files)} files")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
