"""Launcher: local server vs tensorflow_model_server, identity, CPU pinning, warm-up, graceful stop."""

import http.client
import json
import os
import shutil
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from serving import launcher
from serving.config import BatchingParameters, ServingConfig
from serving.conftest import start_server

BODY = json.dumps({"instances": [[[[1.0, 2.0, 3.0]] * 224] * 224]}).encode()


class Predict(threading.Thread):
    """POSTs BODY on its own connection; `.sent` is set (and `.port` is its local port) once
    the whole request is in the kernel, and `.result` is (status, body) when the answer came."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = urllib.parse.urlsplit(url)
        self.sent = threading.Event()
        self.port: int | None = None
        self.result: tuple[int, bytes] | None = None

    def run(self):
        conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=60)
        try:
            conn.request("POST", self.url.path, body=BODY)
            self.port = conn.sock.getsockname()[1]
            self.sent.set()
            response = conn.getresponse()
            self.result = (response.status, response.read())
        finally:
            conn.close()


def _tcp_queues() -> dict[tuple[int, int], tuple[int, int]]:
    """(local port, remote port) -> (send queue, receive queue) of this host's established IPv4 TCP sockets."""
    out = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] != "01":  # TCP_ESTABLISHED
            continue
        local, remote = (int(addr.rsplit(":", 1)[1], 16) for addr in fields[1:3])
        tx, rx = (int(q, 16) for q in fields[4].split(":"))
        out[(local, remote)] = (tx, rx)
    return out


def wait_until_read(server_port: int, client_port: int, timeout_s: float = 30.0) -> None:
    """Until the server has read every byte the client sent (the client sends nothing more):
    first nothing is left unacknowledged on the client's side of the connection, then,
    in a later look, nothing is left unread on the server's."""
    deadline = time.monotonic() + timeout_s
    all_acked = False
    while True:
        queues = _tcp_queues()
        client, server = queues.get((client_port, server_port)), queues.get((server_port, client_port))
        if all_acked and server is not None and server[1] == 0:
            return
        all_acked = all_acked or (client is not None and client[0] == 0)
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the server did not read the whole request within {timeout_s} s "
                f"(client send queue, server receive queue: {client and client[0]}, {server and server[1]})"
            )
        time.sleep(0.005)


@pytest.mark.skipif(0 not in os.sched_getaffinity(0), reason="needs CPU 0")
def test_local_server_is_pinned_reports_identity_and_stops_gracefully(tiny_model, tmp_path):
    # A long batch timeout keeps a request in flight while we stop the server.
    config = ServingConfig(model_name="tiny", intra_op=1, inter_op=1, enable_batching=True,
                           batching=BatchingParameters(max_batch_size=8, batch_timeout_micros=1_500_000))
    server = start_server(config, tiny_model, tmp_path, cpus=[0], local=True, nice=5)
    try:
        # Pinned and reniced before exec: every thread TensorFlow started carries both.
        threads = [int(t) for t in os.listdir(f"/proc/{server.pid}/task")]
        assert len(threads) > 1
        assert all(os.sched_getaffinity(t) == {0} for t in threads)
        base = os.getpriority(os.PRIO_PROCESS, os.getpid())
        assert all(os.getpriority(os.PRIO_PROCESS, t) == min(base + 5, 19) for t in threads)
        if os.path.exists(f"/proc/{server.pid}/autogroup"):  # its own session's scheduler group
            assert Path(f"/proc/{server.pid}/autogroup").read_text().split()[-1] == "5"
        ident = server.identity
        assert ident["nice"] == 5
        assert ident["kind"] == "local" and ident["version"].startswith(launcher.LOCAL_VERSION)
        assert ident["cpus"] == [0] and ident["image_digest"] is None
        assert f"--model_base_path={tiny_model}" in ident["argv"]
        assert f"base_path: '{tiny_model}'" in ident["files"]["models.config"]
        assert "max_batch_size { value: 8 }" in ident["files"]["batching_parameters.txt"]
        log = (tmp_path / "server.log").read_text()
        assert log.index("warm-up: replayed 2 record(s)") < log.index("serving tiny")  # warm-up before AVAILABLE

        request = Predict(server.url + "/v1/models/tiny:predict")
        request.start()
        assert request.sent.wait(30), "the request was not sent within 30 s"
        # Once the server has taken it all off the socket, its handler has it: it waits in its batch (1.5 s).
        wait_until_read(urllib.parse.urlsplit(server.url).port, request.port)
        assert server.stop() == 0
        request.join(30)
        assert request.result is not None, "no answer to the request in flight"
        status, body = request.result
        assert status == 200 and len(json.loads(body)["predictions"][0]) == 1000
        assert "shutting down: 1 request(s) in flight" in (tmp_path / "server.log").read_text()
    finally:
        server.stop()


def test_bad_warm_up_records_keep_the_model_from_becoming_available(tiny_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    (model / "1" / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"not a tfrecord at all")
    server = launcher.launch(ServingConfig(model_name="tiny"), model_base_path=model, rest_port=0,
                             workdir=tmp_path / "w", local=True)
    try:
        with pytest.raises(launcher.LaunchError, match="exited with status 1") as err:
            server.wait_available(120)
        assert "warm-up" in str(err.value)
    finally:
        server.stop()


FAKE_TFS = """#!{python}
import json, sys
if "--version" in sys.argv:
    print("TensorFlow ModelServer: 0.0.0-fake")
    sys.exit(0)
open({out!r}, "w").write(json.dumps(sys.argv))
sys.exit(3)
"""


def test_the_real_binary_gets_tf_serving_flags_and_files(tiny_model, tmp_path):
    fake = tmp_path / "tensorflow_model_server"
    out = tmp_path / "argv.json"
    fake.write_text(FAKE_TFS.format(python=sys.executable, out=str(out)))
    fake.chmod(0o755)
    config = ServingConfig(model_name="tiny", intra_op=2, inter_op=4, enable_batching=True,
                           batching=BatchingParameters(max_batch_size=16, num_batch_threads=2))
    server = launcher.launch(config, model_base_path=tiny_model, rest_port=0, workdir=tmp_path / "w",
                             server_binary=str(fake))
    try:
        with pytest.raises(launcher.LaunchError, match="tensorflow_model_server exited with status 3"):
            server.wait_available(30)
    finally:
        server.stop()
    ident = server.identity
    assert ident["kind"] == "tensorflow_model_server" and ident["version"] == "TensorFlow ModelServer: 0.0.0-fake"
    argv = json.loads(out.read_text())
    assert argv[1:] == ident["argv"][1:]
    work = tmp_path / "w"
    assert f"--model_config_file={work}/models.config" in argv
    assert f"--batching_parameters_file={work}/batching_parameters.txt" in argv
    assert "--tensorflow_intra_op_parallelism=2" in argv and "--tensorflow_inter_op_parallelism=4" in argv
    assert f"base_path: '{tiny_model}'" in (work / "models.config").read_text()
    rest = [a for a in argv if a.startswith("--rest_api_port=")]
    assert server.url.endswith(":" + rest[0].split("=")[1])


def test_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(launcher.LaunchError, match="is not a directory"):
        launcher.launch(ServingConfig(), model_base_path=tmp_path / "nope", rest_port=0, workdir=tmp_path)
