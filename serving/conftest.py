"""Fixtures: the tiny model (//model:tiny_model under Bazel, exported on the fly otherwise)
and local servers started on 127.0.0.1 by the launcher."""

import subprocess
import sys
from pathlib import Path

import pytest

from serving import launcher
from serving.config import ServingConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """Model base path (holding version 1) of the tiny model: name `tiny`, the real signatures."""
    bazel = Path("model/tiny_model/tiny")  # runfiles of //model:tiny_model
    if (bazel / "1" / "saved_model.pb").is_file():
        return bazel.absolute()
    out = tmp_path_factory.mktemp("model")
    subprocess.run(
        [sys.executable, "-m", "model.export", "--arch", "tiny", "--name", "tiny", "--out", str(out)],
        check=True, capture_output=True, cwd=ROOT,
    )
    return out / "tiny"


def start_server(config: ServingConfig, model_dir: Path, workdir: Path, **kwargs) -> launcher.ServerProcess:
    server = launcher.launch(config, model_base_path=model_dir, rest_port=0, workdir=workdir, **kwargs)
    try:
        server.wait_available(120)
    except BaseException:
        server.stop()
        raise
    return server
