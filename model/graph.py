"""The servable: a Keras network wrapped in a tf.Module with two signatures.

Saving through tf.Module + tf.function (rather than Keras' own export) writes the
variables once: ~100 MiB for ResNet50 instead of ~198 MiB.
"""

from __future__ import annotations

import tensorflow as tf

from model import signatures as sig

# Caffe-style preprocessing of keras.applications.resnet50: RGB -> BGR, minus the
# ImageNet channel means (BGR order). Kept in the graph so clients send raw pixels.
_BGR_MEANS = (103.939, 116.779, 123.68)

ARCHITECTURES = ("resnet50", "tiny")


def build_network(arch: str, weights: str | None = None, seed: int = 0):
    """Return a Keras model mapping preprocessed [N,224,224,3] floats to [N,1000] probabilities."""
    import keras

    keras.utils.set_random_seed(seed)
    shape = (sig.IMAGE_SIZE, sig.IMAGE_SIZE, sig.CHANNELS)
    if arch == "resnet50":
        return keras.applications.ResNet50(weights=weights, input_shape=shape, classes=sig.NUM_CLASSES)
    if arch == "tiny":
        if weights:
            raise ValueError("--weights is only supported with --arch resnet50")
        return keras.Sequential(
            [
                keras.Input(shape=shape),
                keras.layers.Conv2D(8, 7, strides=4, activation="relu"),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(sig.NUM_CLASSES, activation="softmax"),
            ],
            name="tiny",
        )
    raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")


def preprocess(pixels: tf.Tensor) -> tf.Tensor:
    """0-255 RGB floats -> the network's input (BGR, mean-subtracted)."""
    return pixels[..., ::-1] - tf.constant(_BGR_MEANS, dtype=tf.float32)


def decode_images(encoded: tf.Tensor) -> tf.Tensor:
    """A batch of encoded JPEG/PNG strings -> [N,224,224,3] float32 pixels 0-255."""

    def one(data: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(data, channels=sig.CHANNELS, expand_animations=False)
        image = tf.cast(image, tf.float32)
        return tf.image.resize(image, (sig.IMAGE_SIZE, sig.IMAGE_SIZE))

    spec = tf.TensorSpec((sig.IMAGE_SIZE, sig.IMAGE_SIZE, sig.CHANNELS), tf.float32)
    return tf.map_fn(one, encoded, fn_output_signature=spec)


class Servable(tf.Module):
    """Holds the network; its two tf.functions become the SavedModel's signatures."""

    def __init__(self, network) -> None:
        super().__init__(name="servesweep_servable")
        self.network = network

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, sig.IMAGE_SIZE, sig.IMAGE_SIZE, sig.CHANNELS], tf.float32, name=sig.IMAGE_INPUT)
        ]
    )
    def serve_pixels(self, image_input: tf.Tensor) -> dict[str, tf.Tensor]:
        return {sig.OUTPUT: self.network(preprocess(image_input), training=False)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=sig.BYTES_INPUT)])
    def serve_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        pixels = decode_images(image_bytes)
        return {sig.OUTPUT: self.network(preprocess(pixels), training=False)}

    def signatures(self) -> dict:
        return {
            sig.DEFAULT_SIGNATURE: self.serve_pixels.get_concrete_function(),
            sig.BYTES_SIGNATURE: self.serve_bytes.get_concrete_function(),
        }
