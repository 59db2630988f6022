"""Batching through the local server over HTTP (merged batches, 503 load shedding, 504,
bounded memory) and gRPC (the same queue sheds with UNAVAILABLE)."""

import asyncio
import base64
import json
import re

import aiohttp
import grpc
import numpy as np

from serving import tensor_proto, tfs_grpc
from serving import tfs_messages_pb2 as pb
from serving.batching import QUEUE_FULL_MESSAGE
from serving.config import BatchingParameters, ServingConfig
from serving.conftest import start_server

# A 1x1 PNG through the serving_bytes signature: small bodies keep the test fast.
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
BODY = json.dumps({"signature_name": "serving_bytes", "instances": [{"b64": PNG_B64}]}).encode()
PATH = "/v1/models/tiny:predict"


def batching_config(**params):
    return ServingConfig(model_name="tiny", intra_op=1, inter_op=1, enable_batching=True,
                         batching=BatchingParameters(**params))


async def _clients(url, clients, per_client, body=BODY):
    """`clients` concurrent clients, each sending `per_client` requests back to back."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        async def one():
            out = []
            for _ in range(per_client):
                async with session.post(url + PATH, data=body) as r:
                    out.append((r.status, await r.read()))
            return out

        results = await asyncio.gather(*(one() for _ in range(clients)))
    return [x for r in results for x in r]


def metric(text, name):
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


async def _metrics(url):
    async with aiohttp.ClientSession() as s, s.get(url + "/monitoring/prometheus/metrics") as r:
        return await r.text()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def test_32_concurrent_clients_are_served_in_batches(tiny_model, tmp_path):
    config = batching_config(max_batch_size=8, batch_timeout_micros=5000, max_enqueued_batches=100,
                             num_batch_threads=1)
    server = start_server(config, tiny_model, tmp_path, local=True)
    try:
        results = asyncio.run(_clients(server.url, clients=32, per_client=3))
        text = asyncio.run(_metrics(server.url))
    finally:
        server.stop()
    assert [s for s, _ in results] == [200] * 96
    predictions = {json.dumps(json.loads(b)["predictions"]) for _, b in results}
    assert len(predictions) == 1  # every caller got its own (identical) row back
    rows = metric(text, ":tensorflow:serving:batching_session:input_batch_size_sum")
    batches = metric(text, ":tensorflow:serving:batching_session:input_batch_size_count")
    singles = metric(text, ':tensorflow:serving:batching_session:input_batch_size_bucket{le="1"}')
    assert rows == 96 and batches < 96 and singles < batches  # batches larger than 1 formed
    assert metric(text, ':tensorflow:serving:request_count{model_name="tiny",status="OK"}') == 96
    assert ':tensorflow:serving:batching_session:queuing_latency_count{thread_pool_name="batch_threads"}' in text


def test_overflowing_the_queue_sheds_load_with_503_and_memory_stays_bounded(tiny_model, tmp_path):
    config = batching_config(max_batch_size=2, batch_timeout_micros=0, max_enqueued_batches=1, num_batch_threads=1)
    server = start_server(config, tiny_model, tmp_path, local=True)
    try:
        statuses, sizes = [], []
        for _ in range(5):
            results = asyncio.run(_clients(server.url, clients=48, per_client=1))
            statuses += [s for s, _ in results]
            sizes.append(rss_kb(server.pid))
            for status, body in results:
                if status == 503:
                    assert json.loads(body) == {"error": QUEUE_FULL_MESSAGE}
        text = asyncio.run(_metrics(server.url))
    finally:
        server.stop()
    assert set(statuses) <= {200, 503} and statuses.count(503) > 0 and statuses.count(200) > 0
    assert metric(text, ':tensorflow:serving:request_count{model_name="tiny",status="UNAVAILABLE"}') == (
        statuses.count(503)
    )
    assert sizes[-1] - sizes[0] < 100_000  # KB: refused requests are not kept


async def _grpc_clients(grpc_url, clients) -> list[tuple[grpc.StatusCode, str]]:
    """``clients`` concurrent Predict calls of the 1x1 PNG; returns (code, details) of each."""
    request = pb.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "tiny", "serving_bytes"
    request.inputs["image_bytes"].CopyFrom(
        tensor_proto.from_numpy(np.array([base64.b64decode(PNG_B64)], dtype=object)))
    async with grpc.aio.insecure_channel(grpc_url.removeprefix("grpc://")) as channel:
        predict = channel.unary_unary(tfs_grpc.PREDICT, request_serializer=pb.PredictRequest.SerializeToString,
                                      response_deserializer=pb.PredictResponse.FromString)

        async def one():
            try:
                await predict(request, timeout=60)
                return grpc.StatusCode.OK, ""
            except grpc.aio.AioRpcError as e:
                return e.code(), e.details()

        return await asyncio.gather(*(one() for _ in range(clients)))


def test_overflowing_the_queue_over_grpc_is_unavailable_with_tf_servings_message(tiny_model, tmp_path):
    config = batching_config(max_batch_size=2, batch_timeout_micros=0, max_enqueued_batches=1, num_batch_threads=1)
    server = start_server(config, tiny_model, tmp_path, local=True)
    try:
        results = []
        for _ in range(5):
            results += asyncio.run(_grpc_clients(server.grpc_url, clients=48))
        text = asyncio.run(_metrics(server.url))
    finally:
        server.stop()
    codes = [c for c, _ in results]
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
    assert codes.count(grpc.StatusCode.UNAVAILABLE) > 0 and codes.count(grpc.StatusCode.OK) > 0
    assert {d for c, d in results if c == grpc.StatusCode.UNAVAILABLE} == {QUEUE_FULL_MESSAGE}
    assert metric(text, ':tensorflow:serving:request_count{model_name="tiny",status="UNAVAILABLE"}') == (
        codes.count(grpc.StatusCode.UNAVAILABLE))


def test_grpc_max_threads_bounds_the_calls_served_at_once(tiny_model, tmp_path):
    # one RPC at a time; each call waits 0.5 s in the queue for a batch of 32 that never fills,
    # so the calls that arrive meanwhile are refused as the binary's thread quota refuses them
    config = batching_config(max_batch_size=32, batch_timeout_micros=500_000, max_enqueued_batches=10,
                             num_batch_threads=1)
    server = start_server(config, tiny_model, tmp_path, local=True, grpc_max_threads=1)
    try:
        results = asyncio.run(_grpc_clients(server.grpc_url, clients=8))
    finally:
        server.stop()
    codes = [c for c, _ in results]
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, results
    assert "--grpc_max_threads=1" in server.identity["argv"]


def test_rest_timeout_gives_504(tiny_model, tmp_path):
    config = ServingConfig(model_name="tiny", rest_api_timeout_ms=300, enable_batching=True,
                           batching=BatchingParameters(max_batch_size=8, batch_timeout_micros=3_000_000))
    server = start_server(config, tiny_model, tmp_path, local=True)
    try:
        ((status, body),) = asyncio.run(_clients(server.url, clients=1, per_client=1))
    finally:
        server.stop()
    assert status == 504 and json.loads(body) == {"error": "Deadline Exceeded"}


def test_oversized_request_is_refused_as_tf_serving_does(tiny_model, tmp_path):
    server = start_server(batching_config(max_batch_size=2), tiny_model, tmp_path, local=True)
    body = json.dumps({"signature_name": "serving_bytes", "instances": [{"b64": PNG_B64}] * 3}).encode()
    try:
        ((status, data),) = asyncio.run(_clients(server.url, clients=1, per_client=1, body=body))
    finally:
        server.stop()
    assert status == 400
    assert json.loads(data) == {"error": "Task size 3 is larger than maximum input batch size 2"}
