"""The generator image, built for real: a Debian minbase with python3 (debootstrap), the
agent's share of the lock (pip, hash-pinned) and its sources, built by buildah, its agent
run as the Job's pod runs it, pushed to a registry started here on 127.0.0.1, its digest
locked in a copy of the lock, the Job rendered from that lock, and a rerun of a sweep whose
agents ran the first image refused once a rebuild changed the locked digest.

Needs root, buildah, debootstrap, docker-registry and the Debian archive and PyPI (skipped
without them, failed under CI=true). About 3 minutes: most of it is debootstrap.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from deploy import generators
from deploy.configs import ClusterOptions
from deploy.render import RenderError
from formats.agent import COUNT_ENV, IMAGE_LOCK_NAME, INDEX_ENV
from loadgen import remote
from loadgen.image import build, rootfs, smoke
from loadgen.run import RunOptions, run
from loadgen.schedule import Profile
from serving.image import builder, lock
from tests.loadgen_helpers import running_server
from tests.registry import loopback_registry, manifest
from tools.python.required import required_tool

REPOSITORY = "servesweep/loadgen"
SEED = Path("deploy/sweeps/seed-gke-e2.yaml")


def _root_or_skip() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("building the generator image needs root (debootstrap, chroot), and CI=true")
        pytest.skip("building the generator image needs root (debootstrap, chroot)")


@dataclasses.dataclass
class Built:
    entry: lock.LockedImage
    builder: builder.Buildah
    lock_file: Path
    work: Path
    said: list[str]
    seconds: float

    @property
    def local(self) -> str:  # the image in buildah's storage
        return f"{self.entry.repository}:{self.entry.tag}"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    _root_or_skip()
    tools = {name: required_tool(name, what=name, install=f"apt-get install {package}",
                                 path=rootfs.sbin_env()["PATH"])  # debootstrap is in /usr/sbin
             for name, package in (("buildah", "buildah"), ("debootstrap", "debootstrap"),
                                   ("docker-registry", "docker-registry"), ("unshare", "util-linux"))}
    with loopback_registry(tools["docker-registry"], tmp_path_factory.mktemp("registry")) as address:
        yield address


@pytest.fixture(scope="module")
def built(registry, tmp_path_factory):
    """One build, run and push through the library, as `bazel run //loadgen:image` does,
    into a copy of the repository's lock."""
    top = tmp_path_factory.mktemp("repo")
    lock_file = top / "deploy" / "images.lock.json"
    lock_file.parent.mkdir()
    shutil.copyfile("deploy/images.lock.json", lock_file)
    work = tmp_path_factory.mktemp("work")
    chosen = builder.Buildah(storage=work / "buildah")
    said: list[str] = []
    started = time.monotonic()
    entry = build.build_and_push(build.GeneratorImage(repository=f"{registry}/{REPOSITORY}"),
                                 build.read_inputs(Path.cwd()), work, builder=chosen, lock_path=lock_file,
                                 lock_name=IMAGE_LOCK_NAME, echo=said.append)
    return Built(entry, chosen, lock_file, work, said, time.monotonic() - started)


def test_the_locked_digest_is_the_one_the_registry_serves(built, registry):
    digest, pushed = manifest(registry, REPOSITORY, built.entry.tag)
    assert digest == built.entry.digest and manifest(registry, REPOSITORY, digest)[0] == digest
    assert len(pushed["layers"]) == 4  # Debian, python packages, sources, bytecode
    locked = lock.read_lock(built.lock_file)
    assert locked[IMAGE_LOCK_NAME] == built.entry
    assert set(locked) - {IMAGE_LOCK_NAME} == set(lock.read_lock("deploy/images.lock.json")) - {IMAGE_LOCK_NAME}
    assert built.entry.build_args["DEBIAN_SUITE"] == "bookworm"
    assert re.match(r"3\.11\.", built.entry.build_args["DEBIAN_PYTHON"])
    compressed = sum(layer["size"] for layer in pushed["layers"]) / 2**20
    steps = [line for line in built.said if re.search(r"(^made |^layers: |^smoke: |: \d+ s$)", line)]
    print("\n" + "\n".join(steps) + f"\nbuilt, run and pushed in {built.seconds:.0f} s; "
          f"{built.builder.size(built.local)} uncompressed, {compressed:.1f} MiB pushed; {built.entry.ref}")


def test_it_was_run_before_the_push_as_the_pod_runs_it(built):
    ran = [line for line in built.said if line.startswith("smoke: ")]
    assert len(ran) == 1 and "answered /ready ready" in ran[0] and "read-only" in ran[0], built.said
    assert built.said.index(ran[0]) < next(i for i, line in enumerate(built.said) if " push " in line)


def test_the_image_is_what_the_job_runs(built):
    config = built.builder.config(built.local)
    job = generators.job(generators.GeneratorJob(count=2, image=built.entry.ref, sweep_id="s-test"),
                         ClusterOptions(namespace="servesweep"))
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert config["User"] == f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
    assert config["Entrypoint"] == ["/usr/bin/python3", "-m", "loadgen.agent_cli"]
    assert config["Cmd"] == container["args"]
    assert f"{container['ports'][0]['containerPort']}/tcp" in config["ExposedPorts"]
    with built.builder.mounted(built.local) as root:
        lib = root / "opt/servesweep/lib"
        assert (lib / "aiohttp").is_dir() and (lib / "numpy").is_dir()
        assert not [p.name for p in lib.iterdir() if re.match(r"(tensorflow|keras|pandas|kubernetes)", p.name)]
        assert (root / "opt/servesweep/app/loadgen/__pycache__").is_dir()  # compiled in the image


def test_its_agent_runs_a_share_with_a_read_only_root(built, tmp_path):
    """The packages work, not just the import: the agent in the image (as the pod: uid
    65532, root read-only) runs a 2 s share against a 127.0.0.1 server in its worker."""
    env = {COUNT_ENV: "1", INDEX_ENV: "0"}
    with running_server("--delay-ms", "2") as (url, _), \
            smoke.running_agent(built.builder, built.local, tmp_path / "agent.log", env=env) as agent:
        options = RunOptions(targets=(url + "/v1/models/m:predict",), payload="b64", max_in_flight=32,
                             profile=Profile(kind="constant", rate=100.0, duration_s=2.0), timeout_s=5.0,
                             max_send_lag_ms=1000.0)  # a busy 2-core machine: this is not about timing
        rec = run(options, str(tmp_path / "run"), agents=[remote.HttpAgent(agent)]).record
    assert rec["complete"] is True, rec["validity"]
    assert rec["totals"]["sent"] == rec["totals"]["ok"] == 200
    assert rec["generators"]["agents"] == [agent]


def test_the_job_is_rendered_from_the_locked_digest(built):
    spec = built.lock_file.parent / "sweeps" / "seed.yaml"  # image.lock: ../images.lock.json
    spec.parent.mkdir()
    shutil.copyfile(SEED, spec)
    out = built.work / "rendered"
    # --allow-tags: the TF Serving image is not locked (it cannot be built here), so the
    # Configs' overlays take the spec's fallback tag; the Job takes the locked digest
    r = subprocess.run([sys.executable, "-m", "deploy.render_cli", str(spec), "--out", str(out),
                        "--generators", "2", "--allow-tags"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"2 generator agents ({built.entry.ref})" in r.stdout
    (job,) = [o for o in yaml.safe_load_all((out / "generators" / "job.yaml").read_text()) if o["kind"] == "Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == built.entry.ref
    overlays = [d for d in out.iterdir() if d.name != "base" and (d / "kustomization.yaml").is_file()]
    assert len(overlays) == 15  # the seed sweep's Configs


def _changed_sources(runfiles: Path, dest: Path) -> Path:
    """A copy of what the image is built from, with one source file changed."""
    for rel in [*build.read_inputs(runfiles).files, build.LISTING, build.LOCKFILE]:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(runfiles / rel, dest / rel)
    agent_cli = dest / "loadgen" / "agent_cli.py"
    agent_cli.write_text(agent_cli.read_text() + "# changed\n")
    return dest


def test_a_rerun_is_refused_once_a_rebuild_changed_the_locked_digest(built, registry, tmp_path):
    """The last test: it rebuilds with a source changed (from the cached Debian and
    packages) and relocks."""
    ran = built.entry.ref  # what a sweep's agents ran, as it would record it
    assert generators.rerun_image(ran, built.lock_file) == ran
    again = build.build_and_push(build.GeneratorImage(repository=built.entry.repository),
                                 build.read_inputs(_changed_sources(Path.cwd(), tmp_path / "src")), built.work,
                                 builder=built.builder, lock_path=built.lock_file, lock_name=IMAGE_LOCK_NAME,
                                 run_first=False, echo=built.said.append)
    assert again.digest != built.entry.digest and again.tag != built.entry.tag
    assert sum(line.startswith("reusing ") for line in built.said) == 2  # Debian and the packages
    before, after = (manifest(registry, REPOSITORY, e.digest)[1]["layers"] for e in (built.entry, again))
    assert [x["digest"] for x in before[:2]] == [x["digest"] for x in after[:2]]  # the same bytes: not sent again
    assert before[2]["digest"] != after[2]["digest"]  # the sources
    with pytest.raises(RenderError, match=f"it ran {re.escape(ran)}, the lock now holds {re.escape(again.ref)}"):
        generators.rerun_image(ran, built.lock_file)
    assert generators.rerun_image(again.ref, built.lock_file) == again.ref
