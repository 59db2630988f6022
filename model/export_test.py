"""The exported model: signatures, agreement between them, warm-up records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from model import exporter, warmup
from model import signatures as sig

BAZEL_TINY = Path("model/tiny_model/tiny/1")


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory) -> Path:
    """The //model:tiny_model directory under Bazel; a fresh tiny export otherwise."""
    if BAZEL_TINY.is_dir():
        return BAZEL_TINY
    out = tmp_path_factory.mktemp("models")
    return exporter.export(exporter.ExportOptions(out=out, name="tiny", arch="tiny")).version_dir


@pytest.fixture(scope="module")
def loaded(version_dir):
    return tf.saved_model.load(str(version_dir))


def test_signature_names(loaded):
    assert set(loaded.signatures.keys()) == {sig.DEFAULT_SIGNATURE, sig.BYTES_SIGNATURE}


def test_default_signature_inputs_and_outputs(loaded):
    fn = loaded.signatures[sig.DEFAULT_SIGNATURE]
    (spec,) = fn.structured_input_signature[1].values()
    assert list(fn.structured_input_signature[1]) == [sig.IMAGE_INPUT]
    assert spec.dtype == tf.float32
    assert spec.shape.as_list() == [None, 224, 224, 3]
    out = fn.structured_outputs[sig.OUTPUT]
    assert out.dtype == tf.float32 and out.shape.as_list() == [None, 1000]


def test_bytes_signature_inputs_and_outputs(loaded):
    fn = loaded.signatures[sig.BYTES_SIGNATURE]
    assert list(fn.structured_input_signature[1]) == [sig.BYTES_INPUT]
    spec = fn.structured_input_signature[1][sig.BYTES_INPUT]
    assert spec.dtype == tf.string and spec.shape.as_list() == [None]
    assert fn.structured_outputs[sig.OUTPUT].shape.as_list() == [None, 1000]


def test_signatures_agree_on_the_same_image(loaded):
    images = np.stack([warmup.sample_pixels(seed) for seed in (1, 2)])
    pngs = tf.constant([tf.io.encode_png(img).numpy() for img in images])
    by_pixels = loaded.signatures[sig.DEFAULT_SIGNATURE](image_input=tf.constant(images, tf.float32))[sig.OUTPUT]
    by_bytes = loaded.signatures[sig.BYTES_SIGNATURE](image_bytes=pngs)[sig.OUTPUT]
    assert by_pixels.shape == (2, 1000)
    np.testing.assert_allclose(by_pixels.numpy(), by_bytes.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(by_pixels.numpy().sum(axis=1), [1.0, 1.0], rtol=1e-4)
    # Different images give different outputs: the network is not constant.
    assert not np.allclose(by_pixels.numpy()[0], by_pixels.numpy()[1])


def test_bytes_signature_resizes_other_sizes(loaded):
    small = tf.io.encode_jpeg(warmup.sample_pixels(3)[:100, :150]).numpy()
    out = loaded.signatures[sig.BYTES_SIGNATURE](image_bytes=tf.constant([small]))[sig.OUTPUT]
    assert out.shape == (1, 1000)


def test_warmup_records_parse_and_run(loaded, version_dir):
    logs = warmup.read(str(version_dir / sig.WARMUP_RELPATH))
    assert [log.predict_log.request.model_spec.signature_name for log in logs] == [
        sig.DEFAULT_SIGNATURE,
        sig.BYTES_SIGNATURE,
    ]
    for log in logs:
        request = log.predict_log.request
        inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
        out = loaded.signatures[request.model_spec.signature_name](**inputs)[sig.OUTPUT]
        assert out.shape == (1, 1000)


def test_refuses_to_overwrite_without_flag(tmp_path):
    (tmp_path / "m" / "1").mkdir(parents=True)
    with pytest.raises(exporter.ExportError, match="already exists"):
        exporter.export(exporter.ExportOptions(out=tmp_path, name="m", arch="tiny"))


@pytest.mark.parametrize("name", ["", "a/b", "x:predict"])
def test_rejects_bad_model_names(tmp_path, name):
    with pytest.raises(exporter.ExportError, match="not a valid"):
        exporter.export(exporter.ExportOptions(out=tmp_path, name=name, arch="tiny"))


def test_tree_hash_tracks_content(tmp_path):
    (tmp_path / "a").write_text("x")
    first = exporter.tree_sha256(tmp_path)
    (tmp_path / "a").write_text("y")
    assert exporter.tree_sha256(tmp_path) != first
