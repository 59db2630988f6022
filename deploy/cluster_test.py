"""ClusterBackend against KubeApiDouble (a local stand-in for the API server)."""

import dataclasses
import http.server
import random
import threading
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from deploy import cluster, generators, spec
from deploy.k8s_double import KubeApiDouble, PodProcess
from deploy.target import DeployError
from serving.image import lock
from tools.python.required import required_tool

SWEEPS = Path(__file__).resolve().parent / "sweeps"
DIGEST = "sha256:" + "e" * 64
FAST = cluster.Timeouts(rollout_s=2.0, load_balancer_s=2.0, model_available_s=2.0, teardown_s=2.0, poll_s=0.01)


@pytest.fixture
def kubectl() -> str:
    return required_tool("kubectl", what="kubectl (with built-in kustomize)",
                         install="the machine image's kubectl 1.32; Debian's kubernetes-client is too old")


needs_kubectl = pytest.mark.usefixtures("kubectl")


@pytest.fixture
def sweep(tmp_path):
    p = tmp_path / "images.lock.json"
    lock.update_lock(p, "tfs-resnet-cpu", lock.LockedImage(repository="reg.example/p/tfs", digest=DIGEST))
    doc = yaml.safe_load((SWEEPS / "seed-gke-e2.yaml").read_text())
    return spec.parse_sweep(doc, source="seed", base_dir=SWEEPS, lock_path=p)


def _backend(api, sweep, tmp_path, **kw):
    conf = k8s.Configuration(host=api.url)
    return cluster.ClusterBackend(
        k8s.ApiClient(conf), options=sweep.cluster, work_dir=tmp_path / "work", timeouts=FAST, **kw
    )


@needs_kubectl  # deploy builds the overlay with kubectl kustomize
def test_deploy_applies_waits_and_tears_down(sweep, tmp_path):
    config = sweep.config("e2-8-64x2-inter4-batch")
    with KubeApiDouble(ready_after_polls=3, lb_after_polls=2, model_loading_polls=2) as api:
        backend = _backend(api, sweep, tmp_path)
        target = backend.deploy(config)
        assert target.urls == (f"http://127.0.0.1:{api.port}/v1/models/resnet:predict",)
        assert target.load_urls("grpc") == ("grpc://127.0.0.1:8500/resnet",)  # the Service's grpc port
        assert target.identity["image_digest"] == DIGEST
        assert "--enable_batching=true" in target.identity["argv"]
        assert api.kinds() == [
            "ConfigMap/" + next(n for k, _, n in api.objects if k == "ConfigMap"),
            "Deployment/tfs-server",
            "Namespace/servesweep",
            "PodDisruptionBudget/tfs-server",
            "Service/tfs-server",
        ]
        patches = [r for r in api.requests if r[0] == "PATCH"]
        assert len(patches) == 5
        assert all(r[2].startswith("application/apply-patch+yaml") for r in patches)  # server-side apply
        assert all(r[3]["fieldManager"] == ["servesweep"] and r[3]["force"] == ["true"] for r in patches)
        dep = api.objects[("Deployment", "servesweep", "tfs-server")]
        assert dep["spec"]["replicas"] == 2
        assert dep["metadata"]["labels"]["servesweep.io/config-id"] == config.id
        backend.teardown()
        assert api.kinds() == ["Namespace/servesweep"]  # the namespace outlives a configuration
        backend.teardown()  # twice is harmless


@needs_kubectl  # deploy builds the overlay with kubectl kustomize
def test_second_deploy_needs_teardown(sweep, tmp_path):
    with KubeApiDouble(ready_after_polls=0, model_loading_polls=0) as api:
        backend = _backend(api, sweep, tmp_path)
        backend.deploy(sweep.configs[0])
        with pytest.raises(DeployError, match="teardown"):
            backend.deploy(sweep.configs[1])
        backend.teardown()


@needs_kubectl  # deploy builds the overlay with kubectl kustomize
def test_image_pull_failure_fails_fast_and_cleans_up(sweep, tmp_path):
    with KubeApiDouble(stuck_reason="ImagePullBackOff") as api:
        backend = _backend(api, sweep, tmp_path)
        with pytest.raises(DeployError, match="cannot start: tfs-server-0: ImagePullBackOff"):
            backend.deploy(sweep.configs[0])
        assert api.kinds() == ["Namespace/servesweep"]  # deleted again


@needs_kubectl  # deploy builds the overlay with kubectl kustomize
def test_keep_on_failure_leaves_objects_for_inspection(sweep, tmp_path):
    with KubeApiDouble(stuck_reason="CrashLoopBackOff") as api:
        backend = _backend(api, sweep, tmp_path, keep_on_failure=True)
        with pytest.raises(DeployError, match="CrashLoopBackOff"):
            backend.deploy(sweep.configs[0])
        assert "Deployment/tfs-server" in api.kinds()
        backend.teardown()
        assert api.kinds() == ["Namespace/servesweep"]


def test_unpinned_image_is_refused_before_any_api_call(sweep, tmp_path):
    doc = dict(sweep.spec, image={"ref": "reg.example/p/tfs:latest"})
    tagged = spec.parse_sweep(doc, source="seed", base_dir=SWEEPS)
    with KubeApiDouble() as api:
        with pytest.raises(DeployError, match="not pinned by digest"):
            _backend(api, tagged, tmp_path).deploy(tagged.configs[0])
        assert api.requests == []


@needs_kubectl  # deploy builds the overlay with kubectl kustomize
def test_rollout_timeout_says_how_far_it_got(sweep, tmp_path):
    with KubeApiDouble(ready_after_polls=10**9) as api:
        backend = _backend(api, sweep, tmp_path)
        with pytest.raises(DeployError, match=r"0/8 replicas available after 2 s"):
            backend.deploy(sweep.config("e2-2-4x8-inter2"))
        backend.teardown()


@needs_kubectl  # deploy builds the overlay with kubectl kustomize
def test_model_never_available_times_out(sweep, tmp_path):
    with KubeApiDouble(ready_after_polls=0, model_loading_polls=10**9) as api:
        backend = _backend(api, sweep, tmp_path)
        with pytest.raises(DeployError, match="not AVAILABLE after 2 s: LOADING"):
            backend.deploy(sweep.configs[0])
        backend.teardown()


@needs_kubectl  # deploy builds the overlay with kubectl kustomize
def test_load_balancer_never_assigned(sweep, tmp_path):
    with KubeApiDouble(ready_after_polls=0, lb_after_polls=10**9) as api:
        backend = _backend(api, sweep, tmp_path)
        with pytest.raises(DeployError, match="no load-balancer address"):
            backend.deploy(sweep.configs[0])
        backend.teardown()


@needs_kubectl  # deploy builds the overlay with kubectl kustomize
def test_fixed_endpoint_url(sweep, tmp_path):
    with KubeApiDouble(ready_after_polls=0, model_loading_polls=0) as api:
        backend = _backend(api, sweep, tmp_path, endpoint=api.url + "/")
        target = backend.deploy(sweep.configs[0])
        assert target.base_urls == (api.url,)
        backend.teardown()


@needs_kubectl  # deploy builds the overlay with kubectl kustomize
def test_unreachable_api_server_is_a_clear_error(sweep, tmp_path):
    conf = k8s.Configuration(host="http://127.0.0.1:9")
    conf.retries = 0
    backend = cluster.ClusterBackend(k8s.ApiClient(conf), options=sweep.cluster, work_dir=tmp_path, timeouts=FAST)
    with pytest.raises(DeployError, match="cannot reach the API server"):
        backend.deploy(sweep.configs[0])


def test_bad_endpoint_option(sweep, tmp_path):
    with pytest.raises(DeployError, match="endpoint"):
        cluster.ClusterBackend(k8s.ApiClient(), options=sweep.cluster, work_dir=tmp_path, endpoint="carrier-pigeon")


def test_pod_problems_reads_scheduling_and_waiting():
    pods = [
        {
            "metadata": {"name": "a"},
            "status": {
                "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/2 nodes"}
                ]
            },
        },
        {
            "metadata": {"name": "b"},
            "status": {"containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]},
        },
        {
            "metadata": {"name": "c"},
            "status": {
                "containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff", "message": "boom"}}}]
            },
        },
    ]
    assert cluster.pod_problems(pods) == [("a", "Unschedulable", "0/2 nodes"), ("c", "CrashLoopBackOff", "boom")]


@needs_kubectl  # kustomize is the real kubectl's; its port-forward is this test's
def test_port_forward_reaches_rest_and_grpc(sweep, tmp_path, kubectl):
    config = dataclasses.replace(sweep.config("e2-8-64x2-inter4-batch"), replicas=1)  # one pod: allowed
    with KubeApiDouble() as api:
        fake = tmp_path / "kubectl"
        fake.write_text(  # kubectl port-forward's own lines, one per port, in the order asked
            "#!/bin/sh\n"
            'if [ "$1" = port-forward ]; then\n'
            f'  echo "Forwarding from 127.0.0.1:{api.port} -> 8501"\n'
            '  echo "Forwarding from 127.0.0.1:40123 -> 8500"\n'
            "  exec sleep 60\n"
            "fi\n"
            f'exec {kubectl} "$@"\n')
        fake.chmod(0o755)
        backend = _backend(api, sweep, tmp_path, endpoint="port-forward", kubectl=str(fake))
        target = backend.deploy(config)
        assert target.urls == (f"http://127.0.0.1:{api.port}/v1/models/resnet:predict",)
        assert target.load_urls("grpc") == ("grpc://127.0.0.1:40123/resnet",)
        backend.teardown()


def test_port_forward_is_refused_for_several_replicas_before_anything_is_applied(sweep, tmp_path):
    config = sweep.config("e2-8-64x2-inter4-batch")
    assert config.replicas == 2
    with KubeApiDouble() as api:
        with pytest.raises(DeployError, match=r"would measure one of its 2 replicas .* --endpoint loadbalancer"):
            _backend(api, sweep, tmp_path, endpoint="port-forward").deploy(config)
        assert api.kinds() == []
    assert cluster.endpoint_refusal("loadbalancer", config) is None
    assert cluster.endpoint_refusal("port-forward", dataclasses.replace(config, replicas=1)) is None


@needs_kubectl  # deploy builds the overlay with kubectl kustomize
def test_an_http_endpoint_names_rest_only(sweep, tmp_path):
    config = sweep.config("e2-8-64x2-inter4-batch")
    with KubeApiDouble() as api:
        target = _backend(api, sweep, tmp_path, endpoint=api.url).deploy(config)
        with pytest.raises(DeployError, match="gives no gRPC address"):
            target.load_urls("grpc")


class _ServerPod:
    """A server pod of the double: a thread serving TF Serving's model status and a metrics
    line on its own pod IP in 127.0.0.0/8, on the REST port."""

    def __init__(self, index: int) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                body = (b'{"model_version_status": [{"version": "1", "state": "AVAILABLE"}]}'
                        if self.path.startswith("/v1/models/") else f"served_by {index}\n".encode())
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.ip = f"127.{random.randint(16, 250)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
        self.server = http.server.ThreadingHTTPServer((self.ip, 8501), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def process(self) -> PodProcess:
        def kill():
            self.server.shutdown()
            self.server.server_close()

        return PodProcess(None, lambda: self.thread.is_alive(), kill, ip=self.ip)


@needs_kubectl  # deploy builds the overlay with kubectl kustomize
def test_in_cluster_the_agents_name_the_headless_service_and_each_pod_is_read_through_the_proxy(sweep, tmp_path):
    config = sweep.config("e2-8-64x2-inter4-batch")
    with KubeApiDouble(ready_after_polls=0, start_server_pod=lambda dep, i: _ServerPod(i).process()) as api:
        backend = _backend(api, sweep, tmp_path, endpoint=cluster.IN_CLUSTER)
        target = backend.deploy(config)
        host = "tfs-server-replicas.servesweep.svc.cluster.local"
        assert target.urls == (f"http://{host}:8501/v1/models/resnet:predict",)
        assert target.load_urls("grpc") == (f"grpc://{host}:8500/resnet",)
        replicas = target.replicas()
        assert [r.name.split("-")[:2] for r in replicas] == [["pod/tfs", "server"]] * 2
        assert sorted(r.get("/monitoring/prometheus/metrics", 5.0) for r in replicas) == [b"served_by 0\n",
                                                                                             b"served_by 1\n"]
        proxied = [path for _, path, _, _ in api.requests if "/proxy/" in path]
        assert any(p.endswith("/proxy/v1/models/resnet") for p in proxied)  # the model waited for, pod by pod
        # the double's cluster DNS: the headless Service names both pods once it exists
        api_client = k8s.ApiClient(k8s.Configuration(host=api.url))
        cluster.Kube(api_client).apply(generators.replicas_service(sweep.cluster), "servesweep")
        ips = sorted(line.split()[0] for line in Path(api.hosts_path).read_text().splitlines() if line.endswith(host))
        assert ips == sorted(p["status"]["podIP"] for p, _ in api.pods.values())
        backend.teardown()
        assert api.pods == {} and host not in Path(api.hosts_path).read_text()


@needs_kubectl  # deploy builds the overlay with kubectl kustomize
def test_a_namespace_the_sweeps_role_may_not_touch_is_taken_as_given(sweep, tmp_path, monkeypatch):
    apply = cluster.Kube.apply

    def forbidden_namespace(self, obj, namespace):  # what a namespaced Role gets for a Namespace
        if obj["kind"] == "Namespace":
            raise ApiException(status=403, reason="Forbidden")
        return apply(self, obj, namespace)

    monkeypatch.setattr(cluster.Kube, "apply", forbidden_namespace)
    with KubeApiDouble(ready_after_polls=0, model_loading_polls=0) as api:
        backend = _backend(api, sweep, tmp_path, endpoint=api.url)
        backend.deploy(sweep.configs[0])
        assert "Deployment/tfs-server" in api.kinds() and "Namespace/servesweep" not in api.kinds()
        backend.teardown()
