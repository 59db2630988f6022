from analysis.facts import cpu_ranges, git_text, host_rows, method_text


def test_cpu_ranges():
    assert cpu_ranges([0, 1, 2, 3, 6, 8, 9]) == "0-3, 6, 8-9"
    assert cpu_ranges([5]) == "5" and cpu_ranges([]) == ""


def test_host_rows_read_as_words_known_keys_first():
    rows = host_rows({"python": "3.11.2", "hostname": "vm", "cpu_model": "AMD EPYC 7B13", "cores": 8,
                      "usable_cpus": [0, 1, 2, 3], "memory_gb": 31.4, "os": "Linux-6.1", "extra": {"a": 1}})
    assert rows == [("hostname", "vm"), ("CPU model", "AMD EPYC 7B13"), ("cores", "8"),
                    ("usable CPUs", "4 (CPU 0-3)"), ("memory", "31.4 GB"), ("operating system", "Linux-6.1"),
                    ("Python", "3.11.2"), ("extra", "a: 1")]
    assert host_rows(None) == [] and host_rows({"hostname": "x", "cores": None}) == [("hostname", "x")]


def test_git_and_method():
    assert git_text({"git": {"commit": "abc", "dirty": True}}) == "abc (with local changes)"
    assert git_text({"git_commit": "old"}) == "old" and git_text({}) is None
    assert method_text({}) is None
    assert method_text({"method": "ramp"}) == "the seed's method (ramp)"
    assert method_text({"method": "search", "search": {"repeats": 2, "resolution": 0.03, "confidence": 0.95,
                                                       "min_probe_s": 13, "max_probe_s": 40}}) == (
        "capacity search (2 searches per Config, resolution 3%, confidence 95%, probes 13-40 s)")
    assert method_text({"method": "search", "search": {"repeats": 2, "max_repeats": 4, "precision": 0.1}}) == (
        "capacity search (2 searches per Config, up to 4 while the 95% interval is wider than +-10%)")
    assert method_text({"method": "search", "search": {"repeats": 1, "max_repeats": 1}}) == (
        "capacity search (1 search per Config)")
