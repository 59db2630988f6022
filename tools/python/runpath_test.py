from pathlib import Path

from tools.python.runpath import user_path


def test_relative_paths_resolve_against_the_bazel_working_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("BUILD_WORKING_DIRECTORY", str(tmp_path))
    assert user_path("results/x") == tmp_path / "results" / "x"
    assert user_path("/abs/p") == Path("/abs/p")


def test_without_bazel_relative_to_the_current_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("BUILD_WORKING_DIRECTORY", raising=False)
    monkeypatch.chdir(tmp_path)
    assert user_path("a") == tmp_path / "a"
    assert user_path("~/q") == Path.home() / "q"
