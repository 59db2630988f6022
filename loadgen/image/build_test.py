import os
import re
import subprocess
import sys
from pathlib import Path

from formats.agent import AGENT_PORT, AGENT_UID
from loadgen.image import build, requirements, rootfs
from serving.image.fakes import fake_buildah


def test_the_dockerfile_is_what_the_job_expects():
    text = build.DOCKERFILE.read_text()
    assert text.count("\nFROM ") == 1 and "\nFROM scratch\n" in text
    assert f"\nUSER {AGENT_UID}:{AGENT_UID}\n" in text and f"\nEXPOSE {AGENT_PORT}\n" in text
    assert '\nENTRYPOINT ["/usr/bin/python3", "-m", "loadgen.agent_cli"]\n' in text
    assert f'\nCMD ["--port", "{AGENT_PORT}"]\n' in text
    assert f"PYTHONPATH=/{rootfs.APP_DIR}:/{rootfs.LIB_DIR}" in text and "PYTHONDONTWRITEBYTECODE=1" in text
    assert re.findall(r"^ADD (\S+) /$", text, re.M) == ["base.tar", "python.tar", "app.tar"]


def test_every_build_arg_is_declared():
    inputs = build.read_inputs(Path.cwd())
    text = build.DOCKERFILE.read_text()
    for name in build.build_args(inputs, "3.11.2-6"):
        assert f"\nARG {name}=" in text, name


def test_the_sources_are_what_the_agent_imports_and_no_tests():
    inputs = build.read_inputs(Path.cwd())
    paths = set(inputs.files)
    assert {"loadgen/agent_cli.py", "loadgen/agent.py", "formats/agent.py", "serving/tfs_messages_pb2.py"} <= paths
    assert not [p for p in paths if p.endswith("_test.py") or p.startswith(("loadgen/image/", "deploy/", "sweep/"))]
    assert not [p for p, text in inputs.files.items() if re.search(r"^\s*(import|from) tensorflow", text, re.M)]
    entries = requirements.parse_lock(Path("requirements_lock.txt").read_text())
    assert inputs.pins == tuple(inputs.subset.pins(entries))
    assert re.fullmatch(r"bookworm-[0-9a-f]{12}", inputs.tag()) and inputs.tag() == inputs.tag()


def test_a_dry_run_names_the_builder_packages_and_commands(tmp_path):
    fake, log = fake_buildah(tmp_path)
    lock_file = tmp_path / "images.lock.json"
    env = dict(os.environ, PATH=str(fake.parent), BUILD_WORKSPACE_DIRECTORY=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "loadgen.image.cli", "--repository", "127.0.0.1:5000/p/loadgen",
                        "--lock", str(lock_file), "--work-dir", str(tmp_path / "w"), "--dry-run"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("builder: buildah. docker buildx is not usable: no `docker` on PATH")
    assert "python packages (" in r.stdout and "aiohttp==" in r.stdout and "tensorflow" not in r.stdout
    assert any(line.startswith("debootstrap --variant=minbase") for line in lines)
    assert any(" bud --isolation chroot --layers " in line for line in lines)
    assert any(" push --tls-verify=false " in line for line in lines)
    assert not lock_file.exists() and [line.split()[0] for line in log.read_text().splitlines()] == ["--version"]
