import os
import tarfile

import pytest

from loadgen.image import rootfs
from serving.image.builder import ImageBuildError


def test_the_mirror_is_the_one_apt_uses_for_the_suite(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        "Types: deb deb-src\n# a snapshot, once\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n")
    assert rootfs.apt_mirror(tmp_path) == "http://mirror.example/debian"


def test_a_one_line_sources_list_and_the_default(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    assert rootfs.apt_mirror(tmp_path) == rootfs.DEFAULT_MIRROR
    (tmp_path / "sources.list").write_text(
        "# deb http://old.example/debian bookworm main\n"
        "deb [signed-by=/usr/share/keyrings/k.gpg] http://line.example/debian bookworm main\n")
    assert rootfs.apt_mirror(tmp_path) == "http://line.example/debian"


def test_debootstrap_makes_a_minbase_with_python():
    cmd = rootfs.debootstrap_command("/x/rootfs", "http://m.example/debian", "amd64")
    assert cmd == ["debootstrap", "--variant=minbase", "--arch=amd64", "--include=python3,ca-certificates",
                   "bookworm", "/x/rootfs", "http://m.example/debian"]


def test_wheels_for_the_images_python_and_glibc_only():
    tags = rootfs.platform_tags("x86_64")
    assert tags[0] == "manylinux_2_36_x86_64" and "manylinux_2_17_x86_64" in tags
    assert tags[-3:] == ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    assert "manylinux_2_37_x86_64" not in tags and "linux_x86_64" not in tags
    cmd = rootfs.pip_command("/w/req.txt", "/w/lib", "x86_64")
    for flag in ("--require-hashes", "--no-deps", "--only-binary=:all:", "--no-cache-dir", "--no-compile"):
        assert flag in cmd
    assert cmd[cmd.index("--python-version") + 1] == "3.11" and cmd[cmd.index("--abi") + 1] == "cp311"
    assert cmd[cmd.index("--target") + 1] == "/w/lib" and cmd[-2:] == ["-r", "/w/req.txt"]
    assert sum(c.startswith("--platform=") for c in cmd) == len(tags)


def test_other_platforms_are_refused():
    assert rootfs.machine("linux/amd64") == ("amd64", "x86_64")
    with pytest.raises(ImageBuildError, match="linux/amd64 only"):
        rootfs.machine("linux/arm64")


def _tree(root):
    (root / "dev" / "pts").mkdir(parents=True)
    (root / "dev" / "null").write_text("")  # stands for a device node: contents of dev/ are left out
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "python3.11").write_text("elf")
    (root / "usr" / "bin" / "python3").symlink_to("python3.11")
    os.link(root / "usr" / "bin" / "python3.11", root / "usr" / "bin" / "python3.11-hard")
    os.mkfifo(root / "usr" / "fifo")
    return root


def test_a_layer_tar_is_sorted_skips_runtime_dirs_and_special_files(tmp_path):
    root = _tree(tmp_path / "root")
    rootfs.write_tar(tmp_path / "a.tar", root, no_contents=rootfs.NO_CONTENTS)
    with tarfile.open(tmp_path / "a.tar") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert list(members) == ["dev", "usr", "usr/bin", "usr/bin/python3", "usr/bin/python3.11",
                             "usr/bin/python3.11-hard"]
    assert members["usr/bin/python3"].issym() and members["usr/bin/python3"].linkname == "python3.11"
    assert members["usr/bin/python3.11-hard"].islnk()
    assert members["usr/bin/python3.11"].uname == ""


def test_a_layer_with_a_fixed_mtime_is_the_same_bytes_each_time(tmp_path):
    root = tmp_path / "app"
    (root / "opt" / "servesweep" / "app").mkdir(parents=True)
    (root / "opt" / "servesweep" / "app" / "a.py").write_text("x = 1\n")
    rootfs.write_tar(tmp_path / "1.tar", root, mtime=rootfs.FIXED_MTIME)
    os.utime(root / "opt" / "servesweep" / "app" / "a.py", (1, 1))
    rootfs.write_tar(tmp_path / "2.tar", root, mtime=rootfs.FIXED_MTIME)
    assert (tmp_path / "1.tar").read_bytes() == (tmp_path / "2.tar").read_bytes()
    with tarfile.open(tmp_path / "1.tar") as tar:
        assert {(m.mtime, m.uid, m.gid) for m in tar.getmembers()} == {(rootfs.FIXED_MTIME, 0, 0)}


def test_trim_empties_docs_and_caches_but_keeps_the_directories(tmp_path):
    for rel in ("usr/share/doc/python3", "var/cache/apt/archives", "usr/share/python3"):
        (tmp_path / rel).mkdir(parents=True)
        (tmp_path / rel / "f").write_text("x")
    rootfs.trim(tmp_path)
    assert list((tmp_path / "usr/share/doc").iterdir()) == [] and list((tmp_path / "var/cache/apt").iterdir()) == []
    assert (tmp_path / "usr/share/python3/f").exists()


def test_a_cached_part_is_made_once_and_a_broken_one_again(tmp_path):
    made = []

    def make(d):
        made.append(d.name)
        (d / "x").write_text("1")

    (tmp_path / "part.partial").mkdir()
    (tmp_path / "part.partial" / "junk").write_text("from a build that was stopped")
    first = rootfs._cached(tmp_path, "part", make, lambda s: None)
    again = rootfs._cached(tmp_path, "part", make, lambda s: None)
    assert first == again == tmp_path / "part" and made == ["part.partial"]
    assert sorted(p.name for p in first.iterdir()) == ["x"]


def test_the_installed_python_version_comes_from_dpkg(tmp_path):
    status = tmp_path / "var/lib/dpkg/status"
    status.parent.mkdir(parents=True)
    status.write_text("Package: python3.11-minimal\nStatus: install ok installed\nVersion: 1\n\n"
                      "Package: python3.11\nStatus: install ok installed\nVersion: 3.11.2-6+deb12u6\n")
    assert rootfs.package_version(tmp_path, "python3.11") == "3.11.2-6+deb12u6"
    with pytest.raises(ImageBuildError, match=r"no python3\.12"):
        rootfs.package_version(tmp_path, "python3.12")
