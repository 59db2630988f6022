"""Names and shapes of the exported model's serving signatures.

Plain constants with no TensorFlow import, so that packages which must not import
TensorFlow (loadgen, analysis) can build requests against the same names.
"""

DEFAULT_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serving_bytes"

# serving_default: the seed study's signature (float pixels 0-255, NHWC).
IMAGE_INPUT = "image_input"
IMAGE_SIZE = 224
CHANNELS = 3

# serving_bytes: encoded JPEG/PNG images, sent over REST as {"b64": ...}.
BYTES_INPUT = "image_bytes"

OUTPUT = "probabilities"
NUM_CLASSES = 1000

# Where TF Serving looks for warm-up records inside a version directory.
WARMUP_RELPATH = "assets.extra/tf_serving_warmup_requests"
# What we record about the export itself, beside the warm-up file.
EXPORT_INFO_RELPATH = "assets.extra/servesweep_export.json"
