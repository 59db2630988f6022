"""ServingConfig: golden files (hand-checked against TF Serving's protos), argv, validation."""

import json
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from tensorflow_serving.config import model_server_config_pb2

from serving import config as cfg
from serving.config import BatchingParameters, ConfigError, ServingConfig

TESTDATA = Path(__file__).resolve().parent / "testdata"

SEED_BATCH = ServingConfig(
    model_name="resnet",
    intra_op=8,
    inter_op=4,
    enable_batching=True,
    batching=BatchingParameters(
        max_batch_size=128, batch_timeout_micros=0, max_enqueued_batches=2, num_batch_threads=2
    ),
)
LABELLED = ServingConfig(
    model_name="tiny",
    base_path="/srv/models/tiny",
    version_policy="specific",
    versions=(1, 2),
    version_labels=(("canary", 2), ("stable", 1)),
)
PADDED = BatchingParameters(
    max_batch_size=16,
    batch_timeout_micros=2000,
    num_batch_threads=1,
    thread_pool_name="resnet_pool",
    allowed_batch_sizes=(4, 8, 16),
    pad_variable_length_inputs=True,
)


def _proto_classes():
    """BatchingParameters and MonitoringConfig as declared by TF Serving (not shipped in the pip package)."""
    f = descriptor_pb2.FileDescriptorProto(name="servesweep_test_tfs.proto", package="tfs", syntax="proto3")
    f.dependency.append("google/protobuf/wrappers.proto")
    T = descriptor_pb2.FieldDescriptorProto
    bp = f.message_type.add(name="BatchingParameters")
    for number, (name, wrapper) in enumerate(
        [("max_batch_size", "Int64Value"), ("batch_timeout_micros", "Int64Value"),
         ("max_enqueued_batches", "Int64Value"), ("num_batch_threads", "Int64Value"),
         ("thread_pool_name", "StringValue")], start=1):
        bp.field.add(name=name, number=number, type=T.TYPE_MESSAGE, type_name=f".google.protobuf.{wrapper}",
                     label=T.LABEL_OPTIONAL)
    bp.field.add(name="allowed_batch_sizes", number=6, type=T.TYPE_INT64, label=T.LABEL_REPEATED)
    bp.field.add(name="pad_variable_length_inputs", number=7, type=T.TYPE_BOOL, label=T.LABEL_OPTIONAL)
    pc = f.message_type.add(name="PrometheusConfig")
    pc.field.add(name="enable", number=1, type=T.TYPE_BOOL, label=T.LABEL_OPTIONAL)
    pc.field.add(name="path", number=2, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    mc = f.message_type.add(name="MonitoringConfig")
    mc.field.add(name="prometheus_config", number=1, type=T.TYPE_MESSAGE, type_name=".tfs.PrometheusConfig",
                 label=T.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    from google.protobuf import wrappers_pb2

    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(f)
    get = message_factory.GetMessageClass
    return (
        get(pool.FindMessageTypeByName("tfs.BatchingParameters")),
        get(pool.FindMessageTypeByName("tfs.MonitoringConfig")),
    )


# --- golden files ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "rendered, golden",
    [
        (SEED_BATCH.batching_parameters_text(), "seed_batch.batching_parameters.txt"),
        (PADDED.text(), "padded.batching_parameters.txt"),
        (SEED_BATCH.models_config_text(), "seed_batch.models.config"),
        (LABELLED.models_config_text(), "labelled.models.config"),
        (ServingConfig().monitoring_config_text(), "default.monitoring.config"),
    ],
)
def test_rendered_files_match_golden(rendered, golden):
    assert rendered == (TESTDATA / golden).read_text()


def test_models_config_parses_as_tf_serving_model_server_config():
    msg = text_format.Parse(LABELLED.models_config_text(), model_server_config_pb2.ModelServerConfig())
    (c,) = msg.model_config_list.config
    assert (c.name, c.base_path, c.model_platform) == ("tiny", "/srv/models/tiny", "tensorflow")
    assert list(c.model_version_policy.specific.versions) == [1, 2]
    assert dict(c.version_labels) == {"canary": 2, "stable": 1}
    latest = text_format.Parse(
        SEED_BATCH.models_config_text(base_path="/x/y"), model_server_config_pb2.ModelServerConfig()
    )
    assert latest.model_config_list.config[0].base_path == "/x/y"
    assert latest.model_config_list.config[0].model_version_policy.latest.num_versions == 1
    every = text_format.Parse(
        ServingConfig(version_policy="all").models_config_text(), model_server_config_pb2.ModelServerConfig()
    )
    assert every.model_config_list.config[0].model_version_policy.WhichOneof("policy_choice") == "all"


def test_batching_and_monitoring_parse_as_tf_serving_protos():
    Batching, Monitoring = _proto_classes()
    b = text_format.Parse(PADDED.text(), Batching())
    assert b.max_batch_size.value == 16 and b.batch_timeout_micros.value == 2000
    assert not b.HasField("max_enqueued_batches")  # unset stays unset: TF's default applies
    assert list(b.allowed_batch_sizes) == [4, 8, 16] and b.pad_variable_length_inputs
    assert b.thread_pool_name.value == "resnet_pool"
    m = text_format.Parse(ServingConfig(monitoring_path="/metrics").monitoring_config_text(), Monitoring())
    assert m.prometheus_config.enable and m.prometheus_config.path == "/metrics"


# --- argv ------------------------------------------------------------------------------


def test_argv_for_the_seed_batch_config():
    assert SEED_BATCH.argv(config_dir="/etc/tfs-config/", binary="tensorflow_model_server") == [
        "tensorflow_model_server",
        "--port=8500",
        "--rest_api_port=8501",
        "--model_config_file=/etc/tfs-config/models.config",
        "--rest_api_timeout_in_ms=30000",
        "--tensorflow_intra_op_parallelism=8",
        "--tensorflow_inter_op_parallelism=4",
        "--enable_batching=true",
        "--batching_parameters_file=/etc/tfs-config/batching_parameters.txt",
        "--monitoring_config_file=/etc/tfs-config/monitoring.config",
        "--enable_model_warmup=true",
    ]


def test_argv_without_batching_file_or_monitoring():
    sc = ServingConfig(enable_batching=False, monitoring=False, rest_api_num_threads=3, enable_model_warmup=False)
    args = sc.argv(config_dir="c", rest_port=9001, grpc_port=None)
    assert args[0] == "--rest_api_port=9001" and not any(a.startswith("--port=") for a in args)
    assert "--rest_api_num_threads=3" in args and "--enable_model_warmup=false" in args
    assert not any("batching" in a or "monitoring" in a for a in args)
    # batching on with no parameters: TF Serving's built-in defaults, no file flag
    defaults = ServingConfig(enable_batching=True).argv(config_dir="c")
    assert "--enable_batching=true" in defaults and not any("batching_parameters_file" in a for a in defaults)
    assert ServingConfig(enable_batching=True).batching_parameters_text() == ""
    assert ServingConfig(enable_batching=True).batching_effective.effective_thread_pool_name == (
        cfg.NO_FILE_THREAD_POOL_NAME
    )


def test_every_file_named_in_argv_is_written(tmp_path):
    for sc in (SEED_BATCH, LABELLED, ServingConfig(monitoring=False)):
        written = sc.write_files(tmp_path / sc.model_name, base_path="/m")
        args = sc.argv(config_dir=tmp_path / sc.model_name)
        named = {a.split("=", 1)[1] for a in args if a.split("=")[0].endswith("_file")}
        assert named == {str(p) for p in written.values()}


def test_ports_must_differ():
    with pytest.raises(ConfigError, match="must differ"):
        ServingConfig().argv(config_dir="c", rest_port=8500, grpc_port=8500)


# --- records ---------------------------------------------------------------------------


@pytest.mark.parametrize("sc", [ServingConfig(), SEED_BATCH, LABELLED, ServingConfig(enable_batching=True),
                                ServingConfig(enable_batching=True, batching=PADDED)])
def test_dict_round_trip_through_json(sc):
    d = json.loads(json.dumps(sc.to_dict()))
    assert ServingConfig.from_dict(d) == sc
    assert ServingConfig.from_dict(d).to_dict() == sc.to_dict()


def test_from_dict_sweep_spec_shape():
    sc = ServingConfig.from_dict({"model_name": "resnet", "intra_op": 2, "inter_op": 2,
                                  "batching": {"max_batch_size": 16, "allowed_batch_sizes": [8, 16]}})
    assert sc.enable_batching and sc.batching.allowed_batch_sizes == (8, 16)
    assert sc.base_path == "/models/resnet"
    assert ServingConfig.from_dict({"batching": True}).enable_batching
    assert not ServingConfig.from_dict({"enable_batching": False, "batching": None}).enable_batching
    assert ServingConfig.from_dict({"version_policy": "specific", "versions": 3}).versions == (3,)


@pytest.mark.parametrize(
    "d, message",
    [
        ({"warp_drive": 1}, "unknown serving field"),
        ({"batching": {"max_batch_size": 8, "max_batch": 2}}, "unknown batching field"),
        ({"enable_batching": False, "batching": {"max_batch_size": 8}}, "refuses --batching_parameters_file"),
        ({"batching": {"max_batch_size": 16, "allowed_batch_sizes": [8, 4, 16]}}, "strictly increasing"),
        ({"batching": {"max_batch_size": 16, "allowed_batch_sizes": [4, 8]}}, r"end with max_batch_size \(16\)"),
        ({"batching": {"allowed_batch_sizes": [10, 100]}}, r"end with max_batch_size \(1000\)"),
        ({"batching": {"max_batch_size": 0}}, "max_batch_size must be >= 1"),
        ({"batching": {"num_batch_threads": "2"}}, "num_batch_threads must be an integer"),
        ({"batching": {"max_enqueued_batches": True}}, "must be an integer"),
        ({"intra_op": -1}, "intra_op must be >= 0"),
        ({"rest_api_timeout_ms": 0}, "rest_api_timeout_ms must be >= 1"),
        ({"model_name": "a/b"}, "model_name"),
        ({"model_name": ""}, "model_name"),
        ({"version_policy": "newest"}, "version_policy must be one of"),
        ({"version_policy": "specific"}, "needs at least one"),
        ({"versions": [1]}, "only used with version_policy 'specific'"),
        ({"version_labels": {"bad-label": 1}}, r"\[a-zA-Z0-9_\]\+"),
        ({"version_policy": "specific", "versions": [1], "version_labels": {"next": 2}}, "only labels loaded"),
        ({"monitoring_path": "metrics"}, "absolute URL path"),
        ({"enable_batching": "yes"}, "true or false"),
        ({"base_path": "/a'b"}, "quotes"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(d, message):
    with pytest.raises(ConfigError, match=message):
        ServingConfig.from_dict(d)


def test_config_is_frozen_and_hashable():
    with pytest.raises(AttributeError):
        SEED_BATCH.intra_op = 3  # type: ignore[misc]
    assert hash(SEED_BATCH) == hash(ServingConfig.from_dict(SEED_BATCH.to_dict()))


def test_effective_batching_defaults_are_tf_servings():
    b = ServingConfig(enable_batching=True, batching=BatchingParameters(max_batch_size=32)).batching_effective
    effective = (b.effective_max_batch_size, b.effective_batch_timeout_micros, b.effective_max_enqueued_batches)
    assert effective == (32, 0, 10)
    assert b.effective_num_batch_threads(schedulable_cpus=3) == 3
    assert ServingConfig().batching_effective is None
