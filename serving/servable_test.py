import pytest

from serving.servable import op_error_code


@pytest.mark.parametrize("name, code", [
    ("ResourceExhaustedError", "RESOURCE_EXHAUSTED"), ("UnavailableError", "UNAVAILABLE"),
    ("DeadlineExceededError", "DEADLINE_EXCEEDED"), ("DataLossError", "DATA_LOSS"),
    ("UnauthenticatedError", "UNAUTHENTICATED"), ("InternalError", "INTERNAL")])
def test_op_errors_map_to_tf_servings_code_names(name, code):
    import tensorflow as tf

    assert op_error_code(getattr(tf.errors, name)(None, None, "boom")) == code
