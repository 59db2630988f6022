"""Prometheus exposition with TF Serving's names, labels and buckets."""

from serving import metrics


def test_names_are_tf_monitoring_names_with_colons():
    assert metrics.exposition_name("/tensorflow/serving/request_count") == metrics.REQUEST_COUNT
    assert metrics.exposition_name("/tensorflow/serving/batching_session/queuing_latency") == metrics.QUEUING_LATENCY


def test_exponential_buckets_match_tf():
    b = metrics.exponential_buckets(10, 1.8, 33)
    assert len(b) == 33 and b[0] == 10 and abs(b[1] - 18) < 1e-9 and abs(b[2] - 32.4) < 1e-9


def test_counter_and_histogram_exposition():
    m = metrics.ServerMetrics()
    assert m.render() == ""  # nothing recorded, nothing listed
    m.request_count.inc("resnet", "OK")
    m.request_count.inc("resnet", "OK")
    m.request_latency.observe(15, "resnet", "predict", "REST")
    m.request_latency.observe(1e12, "resnet", "predict", "REST")
    lines = m.render().splitlines()
    assert "# TYPE :tensorflow:serving:request_count counter" in lines
    assert ':tensorflow:serving:request_count{model_name="resnet",status="OK"} 2' in lines
    labels = 'model_name="resnet",API="predict",entrypoint="REST"'
    assert f':tensorflow:serving:request_latency_bucket{{{labels},le="10"}} 0' in lines
    assert f':tensorflow:serving:request_latency_bucket{{{labels},le="18"}} 1' in lines
    assert f':tensorflow:serving:request_latency_bucket{{{labels},le="+Inf"}} 2' in lines
    assert f":tensorflow:serving:request_latency_count{{{labels}}} 2" in lines
    assert any(line.startswith(f":tensorflow:serving:request_latency_sum{{{labels}}} ") for line in lines)


def test_label_values_are_escaped():
    c = metrics.Counter("x", ("a",))
    c.inc('q"\\\n')
    assert c.render()[1] == 'x{a="q\\"\\\\\\n"} 1'
