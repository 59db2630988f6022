"""TF Serving's gRPC surface, declared once: method paths, ports, message limits.

The server (serving/grpc_api.py) and the generator's gRPC transport import these; this
module imports nothing heavy (no gRPC, no TensorFlow).
"""

from __future__ import annotations

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
PREDICT_METHOD = "Predict"
PREDICT = f"/{PREDICTION_SERVICE}/{PREDICT_METHOD}"
GET_MODEL_METADATA = f"/{PREDICTION_SERVICE}/GetModelMetadata"
GET_MODEL_STATUS = f"/{MODEL_SERVICE}/GetModelStatus"

DEFAULT_GRPC_PORT = 8500  # tensorflow_model_server --port
INT32_MAX = 2**31 - 1
# gRPC's receive limit is 4 MiB by default (sending is unlimited). TF Serving's server
# builder raises it to INT32_MAX (SetMaxMessageSize), and a client must do the same to read
# replies over 4 MiB: both ends use these channel options.
MAX_RECEIVE = "grpc.max_receive_message_length"
RECEIVE_ANY_SIZE = ((MAX_RECEIVE, INT32_MAX),)
MAX_ERROR_MESSAGE_CHARS = 1024  # TF Serving cuts a status message to this many characters

SIGNATURE_DEF_FIELD = "signature_def"  # GetModelMetadata's only metadata_field
SIGNATURE_DEF_MAP_TYPE_URL = "type.googleapis.com/tensorflow.serving.SignatureDefMap"
