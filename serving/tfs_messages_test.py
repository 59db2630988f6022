"""Our TF Serving messages against tensorflow-serving-api's: the same bytes both ways,
every field compared; and TensorProto <-> numpy as TensorFlow converts."""

import numpy as np
import pytest

from serving import tensor_proto
from serving import tfs_messages_pb2 as pb
from serving.errors import ApiError


def ours_request() -> pb.PredictRequest:
    r = pb.PredictRequest(output_filter=["probabilities", "logits"])
    r.model_spec.name = "resnet"
    r.model_spec.version.value = 7
    r.model_spec.signature_name = "serving_default"
    r.inputs["image"].CopyFrom(tensor_proto.from_numpy(np.arange(12, dtype=np.float32).reshape(1, 2, 2, 3)))
    r.inputs["typed"].CopyFrom(tensor_proto.from_numpy(np.array([[1.5, -2.0]], np.float64), content=False))
    r.inputs["ints"].CopyFrom(tensor_proto.from_numpy(np.array([3, -4, 2**40], np.int64), content=False))
    r.inputs["small"].CopyFrom(tensor_proto.from_numpy(np.array([1, 255], np.uint8), content=False))
    r.inputs["flags"].CopyFrom(tensor_proto.from_numpy(np.array([True, False]), content=False))
    r.inputs["half"].CopyFrom(tensor_proto.from_numpy(np.array([0.5, 3.0], np.float16), content=False))
    r.inputs["jpeg"].CopyFrom(tensor_proto.from_numpy(np.array([b"\xff\xd8\x00bytes"], dtype=object)))
    return r


def test_a_predict_request_decodes_with_tensorflow_serving_api_and_back():
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    ours = ours_request()
    theirs = predict_pb2.PredictRequest.FromString(ours.SerializeToString())
    assert theirs.model_spec.name == "resnet" and theirs.model_spec.version.value == 7
    assert theirs.model_spec.signature_name == "serving_default"
    assert list(theirs.output_filter) == ["probabilities", "logits"]
    assert set(theirs.inputs) == set(ours.inputs)
    for alias, proto in ours.inputs.items():
        want = tensor_proto.to_numpy(proto)
        got = tf.make_ndarray(theirs.inputs[alias])
        assert got.dtype == want.dtype and got.shape == want.shape, alias
        assert got.tolist() == want.tolist(), alias
    # and back: TF's own encoding of tensors (make_tensor_proto) decodes with ours
    back = predict_pb2.PredictRequest()
    back.CopyFrom(theirs)
    back.inputs["made"].CopyFrom(tf.make_tensor_proto(np.array([[1, 2], [3, 4]], np.int32)))
    back.model_spec.ClearField("version")
    back.model_spec.version_label = "canary"
    mine = pb.PredictRequest.FromString(back.SerializeToString())
    assert mine.model_spec.WhichOneof("version_choice") == "version_label" and mine.model_spec.version_label == "canary"
    assert tensor_proto.to_numpy(mine.inputs["made"]).tolist() == [[1, 2], [3, 4]]
    assert mine.SerializeToString(deterministic=True) == pb.PredictRequest.FromString(
        back.SerializeToString(deterministic=True)).SerializeToString(deterministic=True)


def test_a_predict_response_from_tf_decodes_with_ours():
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    theirs = predict_pb2.PredictResponse()
    theirs.model_spec.name = "resnet"
    theirs.model_spec.version.value = 3
    theirs.outputs["probabilities"].CopyFrom(tf.make_tensor_proto(np.full((2, 1000), 0.001, np.float32)))
    ours = pb.PredictResponse.FromString(theirs.SerializeToString())
    assert ours.model_spec.version.value == 3
    assert tensor_proto.to_numpy(ours.outputs["probabilities"]).shape == (2, 1000)


def test_typed_values_fill_as_tensorflow_does():
    one = pb.TensorProto(dtype=pb.DT_FLOAT, float_val=[2.5])
    one.tensor_shape.dim.add().size = 3
    assert tensor_proto.to_numpy(one).tolist() == [2.5, 2.5, 2.5]  # the last value repeats
    none = pb.TensorProto(dtype=pb.DT_INT32)
    none.tensor_shape.dim.add().size = 2
    assert tensor_proto.to_numpy(none).tolist() == [0, 0]
    many = pb.TensorProto(dtype=pb.DT_FLOAT, float_val=[1, 2, 3])
    many.tensor_shape.dim.add().size = 2
    assert tensor_proto.to_numpy(many).tolist() == [1, 2]  # extra values are dropped
    short = tensor_proto.from_numpy(np.zeros(4, np.float32))
    short.tensor_content = short.tensor_content[:-1]
    with pytest.raises(ApiError):
        tensor_proto.to_numpy(short)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.uint8, np.int8, np.int16,
                                   np.uint16, np.uint32, np.uint64, np.float16, np.bool_, np.complex64])
@pytest.mark.parametrize("content", [True, False])
def test_numpy_round_trips(dtype, content):
    array = (np.arange(6) % 3).astype(dtype).reshape(2, 3)
    back = tensor_proto.to_numpy(pb.TensorProto.FromString(tensor_proto.from_numpy(array, content=content)
                                                           .SerializeToString()))
    assert back.dtype == array.dtype and back.tolist() == array.tolist()
