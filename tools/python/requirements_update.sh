#!/usr/bin/env bash
# `./bazelw run //:requirements_update`: re-resolve requirements.in into the hash-pinned
# requirements_lock.txt. The full `tensorflow` wheel is kept out: tensorflow-serving-api
# asks for it, but tensorflow-cpu provides the same modules (pip runs with --no-deps).
set -euo pipefail
uv="$(pwd)/$1"
cd "${BUILD_WORKSPACE_DIRECTORY:?run this with bazel run}"
exec "$uv" pip compile requirements.in \
  --generate-hashes \
  --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28 \
  --no-emit-package tensorflow \
  --custom-compile-command "./bazelw run //:requirements_update" \
  --output-file requirements_lock.txt "${@:2}"
