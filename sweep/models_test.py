import pytest

from sweep import models
from sweep.loop import SweepError


def test_an_exported_model_is_not_exported_again(tmp_path):
    (tmp_path / "resnet" / "1").mkdir(parents=True)
    said = []
    assert models.has_model(tmp_path, "resnet") and not models.has_model(tmp_path, "tiny")
    assert models.ensure_model(tmp_path, "resnet", "resnet50", said.append) is False
    assert said == []


def test_a_failing_export_is_a_sweep_error_with_the_exporters_last_lines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no model/export binary here: the module form runs
    script = tmp_path / "fake_python"
    script.write_text("#!/bin/sh\necho 'Traceback: no weights' >&2\nexit 3\n")
    script.chmod(0o755)
    monkeypatch.setattr(models.sys, "executable", str(script))
    said = []
    with pytest.raises(SweepError, match="model export failed:\nTraceback: no weights"):
        models.ensure_model(tmp_path / "models", "resnet", "resnet50", said.append)
    assert "exporting resnet50" in said[0]


def test_unknown_architecture_is_refused(tmp_path):
    with pytest.raises(SweepError, match="unknown model architecture"):
        models.ensure_model(tmp_path, "m", "vgg")
