"""A Config made ready to probe: deployed, warmed up, and its first guess taken.

From this machine (``sweep.warmup``'s closed loop, ``sweep.saturation``'s), or through
the sweep's generator agents (``sweep.agents``: open-loop runs on the agents). The
replicas are listed here, and their metrics read before the first probe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from deploy.target import Backend
from loadgen.options import GeneratorOptions
from loadgen.payload import Payload
from sweep import scrape
from sweep.agents import Generators
from sweep.saturation import saturate
from sweep.warmup import WarmupOptions, warm_and_record


def prepare(subject: Any, backend: Backend, body_for: Callable[[str, str], Payload], warmup: WarmupOptions,
            saturation_s: float, timeout_s: float, phase: Callable[[str, str], None], *,
            load: GeneratorOptions | None = None, agents: Generators | None = None) -> bool:
    """Deploy ``subject`` (a ``sweep.capacity.Subject``), warm it up and take its first
    guess (a ``saturation_s`` step), in the Config's protocol, from here or through the
    ``agents`` (with ``load``); False (with ``subject.failed``) if that fails."""
    t0 = time.monotonic()
    phase("deploying", "")
    try:
        subject.target = backend.deploy(subject.config)
        subject.urls = subject.target.load_urls(subject.config.protocol)
        subject.body = body = body_for(subject.config.protocol, subject.target.model_name)
    except Exception as err:
        subject.failed = f"deploy failed: {err}"
        return False
    subject.status.timed("deploy", t0)
    t0 = time.monotonic()
    phase("warming up", "" if agents is None else f"through {agents.count} generator agents")
    try:
        subject.read, subject.after = subject.target.replicas(), []
        if agents is None:
            warm, subject.failed = warm_and_record(subject.urls, body, warmup, timeout_s=timeout_s,
                                                   config_dir=subject.dir)
        else:
            agents.wait_resolved(subject.urls, len(subject.read))
            warm, subject.failed = agents.warm_and_record(subject.urls, load, warmup, replicas=len(subject.read),
                                                          config_dir=subject.dir)
    except Exception as err:  # the replicas not listed, the agents not answering
        subject.failed = f"warm-up failed: {err}"
    subject.status.timed("warmup", t0)
    if subject.failed:
        return False
    if subject.guess is None:
        t0 = time.monotonic()
        if agents is None:
            sat = saturate(subject.urls, body.body, body.content_type, seconds=saturation_s, timeout_s=timeout_s)
        else:
            try:
                sat = agents.saturate(subject.urls, load, replicas=len(subject.read), seconds=saturation_s,
                                      latency_ms=warm.record()["last_window_median_ms"], out_dir=subject.dir / "guess")
            except Exception as err:  # the agents not answering
                subject.failed = f"the saturation step failed: {err}"
                return False
        subject.status.timed("saturation", t0)
        if sat.rps <= 0:
            subject.failed = f"the saturation step completed no request ({sat.errors} errors)"
            return False
        subject.guess = sat.rps
        how = "closed-loop saturation" if agents is None else "saturation through the agents"
        phase("guess", f"{how} {sat.rps:.1f} req/s: the search starts there")
    subject.before = scrape.scrape_all(subject.read)
    return True
