"""`py_pytest`: a py_test that runs pytest on its sources and reports JUnit XML."""

def py_pytest(name, srcs, deps = [], data = [], args = [], **kwargs):
    """Runs pytest over `srcs` (files of this package).

    Depends on the lock's hash so that changing third-party packages re-runs the test.
    """
    native.py_test(
        name = name,
        srcs = srcs + ["//tools/python:pytest_main.py"],
        main = "//tools/python:pytest_main.py",
        args = ["$(rootpath %s)" % src for src in srcs] + args,
        deps = deps,
        data = data + ["@pypi//:lock.sha256"],
        python_version = "PY3",
        **kwargs
    )
