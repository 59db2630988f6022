"""TF Serving warm-up records: a TFRecord of PredictionLog protos, one per signature."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from model import signatures as sig


def sample_pixels(seed: int = 0) -> np.ndarray:
    """A deterministic 224x224 RGB test image (uint8): smooth gradients plus noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : sig.IMAGE_SIZE, 0 : sig.IMAGE_SIZE].astype(np.float32)
    base = np.stack([x, y, (x + y) / 2], axis=-1) * (255.0 / sig.IMAGE_SIZE)
    noise = rng.normal(0.0, 12.0, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def prediction_logs(model_name: str, seed: int = 0) -> list[prediction_log_pb2.PredictionLog]:
    """One warm-up request for each signature, built from the same image."""
    pixels = sample_pixels(seed)
    png = tf.io.encode_png(pixels).numpy()
    requests = [
        (sig.DEFAULT_SIGNATURE, sig.IMAGE_INPUT, tf.make_tensor_proto(pixels[None].astype(np.float32))),
        (sig.BYTES_SIGNATURE, sig.BYTES_INPUT, tf.make_tensor_proto([png], dtype=tf.string)),
    ]
    logs = []
    for signature, key, tensor in requests:
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature)
        )
        request.inputs[key].CopyFrom(tensor)
        logs.append(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs


def write(path: str, logs: list[prediction_log_pb2.PredictionLog]) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())


def read(path: str) -> list[prediction_log_pb2.PredictionLog]:
    """Parse a warm-up file; raises if any record is not a PredictionLog."""
    logs = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log)
    return logs
