"""Every first-party package's Python sources (each package exports them as :py_srcs):
what //:lint checks and what //tools/ci:imports_test reads. Add a new package here."""

PY_SRCS = [
    "//analysis:py_srcs",
    "//bench:py_srcs",
    "//bench/loadgen:py_srcs",
    "//bench/search:py_srcs",
    "//bench/serving:py_srcs",
    "//deploy:py_srcs",
    "//formats:py_srcs",
    "//loadgen:py_srcs",
    "//loadgen/image:py_srcs",
    "//model:py_srcs",
    "//serving:py_srcs",
    "//serving/image:py_srcs",
    "//sweep:py_srcs",
    "//tests:py_srcs",
    "//tools/ci:py_srcs",
    "//tools/python:py_srcs",
]
