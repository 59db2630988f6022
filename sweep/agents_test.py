import pytest

from deploy.target import DeployError
from formats.agent import AgentCallError
from sweep import agents


class FakeJob:
    """What sweep.agents calls of deploy.agents.GeneratorJob, recorded."""

    namespace = "servesweep"

    def __init__(self, fail_delete: bool = False) -> None:
        self.calls: list[str] = []
        self.fail_delete = fail_delete
        self.generation = 0  # bumped when a pod is replaced

    def apply(self) -> None:
        self.calls.append("apply")

    def links(self):
        self.calls.append("links")
        return [f"agent-0.{self.generation}", f"agent-1.{self.generation}"]

    def delete(self) -> None:
        self.calls.append("delete")
        if self.fail_delete:
            raise DeployError("the API server answered 500")


@pytest.mark.parametrize("raised", [RuntimeError("a bug"), KeyboardInterrupt()])
def test_the_job_is_deleted_however_the_sweep_ends(raised):
    job, problems = FakeJob(), []
    with pytest.raises(type(raised)), agents.generators_up(job, on_problem=problems.append):
        assert job.calls == ["apply", "links"]  # every agent waited for before the sweep
        raise raised
    assert job.calls[-1] == "delete" and problems == []


def test_a_job_that_cannot_be_deleted_is_told_with_what_to_do():
    job, problems = FakeJob(fail_delete=True), []
    with agents.generators_up(job, on_problem=problems.append):
        pass
    (said,) = problems
    assert "500" in said and "kubectl -n servesweep delete job/servesweep-generators" in said


def test_a_run_the_agents_could_not_start_is_tried_again_on_fresh_links(monkeypatch):
    job, started = FakeJob(), []

    def run(options, out_dir, *, agents, **kw):
        started.append(agents)
        if len(started) == 1:
            job.generation += 1  # the Job replaces the pod that failed
            raise AgentCallError("pod/agent-1: 503")
        return "result"

    monkeypatch.setattr(agents, "run", run)
    gens = agents.Generators(job, sleep=lambda s: None)
    assert gens.run("options", "dir") == "result"
    assert started == [["agent-0.0", "agent-1.0"], ["agent-0.1", "agent-1.1"]]


def test_a_run_that_never_starts_says_so_after_its_attempts(monkeypatch):
    def run(options, out_dir, *, agents, **kw):
        raise AgentCallError("pod/agent-1: 503")

    monkeypatch.setattr(agents, "run", run)
    with pytest.raises(AgentCallError, match=r"503 \(3 attempts\)"):
        agents.Generators(FakeJob(), sleep=lambda s: None).run("options", "dir")
