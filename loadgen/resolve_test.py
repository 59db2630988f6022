import pytest

from loadgen.resolve import ResolveError, expand, lookup, read_hosts

SVC = "tfs-server-replicas.servesweep.svc.cluster.local"
TABLE = {SVC: ["10.0.2.7", "10.0.1.9", "10.0.2.7"], "one.example": ["10.9.9.9"], "v6.example": ["fd00::2", "fd00::1"],
         "none.example": []}


@pytest.mark.parametrize(("urls", "expanded"), [
    # a headless Service's name: one target per ready pod, sorted by address, duplicates dropped
    ((f"http://{SVC}:8501/v1/models/m:predict",),
     ("http://10.0.1.9:8501/v1/models/m:predict", "http://10.0.2.7:8501/v1/models/m:predict")),
    ((f"grpc://{SVC}:8500/m",), ("grpc://10.0.1.9:8500/m", "grpc://10.0.2.7:8500/m")),
    # one address (a ClusterIP Service, a load balancer) or an IP: left as written
    (("http://one.example:8501/v1/models/m:predict",), ("http://one.example:8501/v1/models/m:predict",)),
    (("http://127.0.0.1:8501/p", "http://[::1]:8501/p"), ("http://127.0.0.1:8501/p", "http://[::1]:8501/p")),
    # in place, among others; IPv6 in brackets
    (("http://127.0.0.1:1/p", "http://v6.example/p"),
     ("http://127.0.0.1:1/p", "http://[fd00::1]/p", "http://[fd00::2]/p")),
])
def test_a_name_with_several_addresses_becomes_a_target_per_address(urls, expanded):
    assert expand(urls, TABLE.__getitem__) == expanded


def test_a_name_without_addresses_is_refused():
    with pytest.raises(ResolveError, match=r"none\.example"):
        expand(("http://none.example:8501/p",), TABLE.__getitem__)


def test_the_hosts_file_comes_before_the_resolver_and_lists_every_line(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text(f"# a comment\n127.0.0.1 localhost\n127.8.0.2 {SVC.upper()} alias\n"
                     f"127.8.0.1\t{SVC}.  # trailing dot\n")
    assert read_hosts(hosts, SVC) == ["127.8.0.2", "127.8.0.1"]
    assert lookup(SVC, hosts) == ["127.8.0.2", "127.8.0.1"]
    assert lookup("127.0.0.1", hosts) == ["127.0.0.1"]  # not named there: the system resolver
    with pytest.raises(ResolveError, match="hosts file"):
        lookup(SVC, tmp_path / "missing")
