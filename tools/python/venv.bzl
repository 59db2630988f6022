"""`python_venv`: a repository rule that installs the hash-pinned lock into a venv and
exposes that venv's interpreter as Bazel's Python toolchain.

Why a venv toolchain rather than `pip install --target` + `py_library(imports=...)`:
measured on this kind of machine (docs/developing.md), the venv avoids building runfiles
symlink trees of ~17-40k files for TensorFlow, so a TF test reruns in ~5 s instead of
~30-60 s and `import tensorflow` takes ~2.5 s instead of ~6 s. Cache correctness is kept
by `@pypi//:lock.sha256`, which every `py_pytest` depends on: changing the lock re-runs
this rule (the lock is a label attribute) and re-runs the tests.
"""

_BUILD = """\
load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

package(default_visibility = ["//visibility:public"])

exports_files(["lock.sha256"])

py_runtime(
    name = "python3_runtime",
    interpreter_path = "{interpreter}",
    python_version = "PY3",
    stub_shebang = "#!/usr/bin/env python3",
)

py_runtime_pair(
    name = "runtime_pair",
    py3_runtime = ":python3_runtime",
)

toolchain(
    name = "python_toolchain",
    toolchain = ":runtime_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)

filegroup(
    name = "uv",
    srcs = ["venv/bin/uv"],
)
"""

_PROBE = "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"

def _find_python(rctx):
    """The first candidate interpreter of the wanted version that can create venvs."""
    candidates = []
    if rctx.os.environ.get("SERVESWEEP_PYTHON"):
        candidates.append(rctx.os.environ["SERVESWEEP_PYTHON"])
    for name in ["python" + rctx.attr.python_version, "python3"]:
        found = rctx.which(name)
        if found:
            candidates.append(str(found))
    tried = []
    for candidate in candidates:
        result = rctx.execute([candidate, "-c", _PROBE])
        version = result.stdout.strip()
        if result.return_code == 0 and version == rctx.attr.python_version:
            return candidate
        tried.append("%s (%s)" % (candidate, version or result.stderr.strip().splitlines()[-1:] or "failed"))
    fail(("servesweep needs Python %s with the venv module. Tried: %s. Install it " +
          "(Debian: apt-get install python3 python3-venv) or point SERVESWEEP_PYTHON at one.") %
         (rctx.attr.python_version, ", ".join(tried) or "no python3 on PATH"))

def _python_venv_impl(rctx):
    python = _find_python(rctx)
    lock = rctx.path(rctx.attr.lock)
    rctx.report_progress("creating venv with " + python)
    result = rctx.execute([python, "-m", "venv", "--clear", "venv"], timeout = 600)
    if result.return_code != 0:
        fail("creating the venv failed:\n" + result.stderr)

    rctx.report_progress("pip install --require-hashes -r requirements_lock.txt (TensorFlow: ~1.5 GB, a few minutes)")
    result = rctx.execute(
        [
            "venv/bin/python",
            "-m",
            "pip",
            "install",
            "--require-hashes",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar=off",
            "--quiet",
            "-r",
            str(lock),
        ],
        timeout = 3600,
    )
    if result.return_code != 0:
        fail("installing the lock failed (is PyPI reachable?):\n" + result.stderr[-4000:])

    result = rctx.execute(["venv/bin/python", "-c", "import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())", str(lock)])
    rctx.file("lock.sha256", result.stdout)
    rctx.file("BUILD.bazel", _BUILD.format(interpreter = str(rctx.path("venv/bin/python3"))))

python_venv = repository_rule(
    implementation = _python_venv_impl,
    attrs = {
        "lock": attr.label(mandatory = True, allow_single_file = True),
        "python_version": attr.string(default = "3.11"),
    },
    environ = ["SERVESWEEP_PYTHON", "PATH"],
    local = False,
)
