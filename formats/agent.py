"""The generator agent's contract with what starts it (deploy's Job) and what drives it
(loadgen.remote): its port, its readiness path, and the environment that names its share."""

AGENT_PORT = 8600  # the control API (`//loadgen:agent --port`)
READY_PATH = "/ready"
RESOLVE_PATH = "/resolve"  # ?target=URL...: the targets a share naming them is sent to (loadgen.resolve)
SHARE_SCHEMA = "servesweep.share/1"  # what a controller posts to /runs/ID (loadgen.share)
COUNT_ENV = "SERVESWEEP_GENERATORS"  # how many agents share the schedule
INDEX_ENV = "JOB_COMPLETION_INDEX"  # this agent's index: set by Kubernetes for an Indexed Job's pods


class AgentCallError(RuntimeError):
    """A call to an agent failed: refused, unreachable or not understood (the message
    names the agent). Every link to an agent raises it, however it reaches the agent."""
