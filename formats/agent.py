"""The generator agent's contract with what starts it (deploy's Job, from the image
//loadgen:image builds) and what drives it (loadgen.remote): its port, its readiness path,
the environment that names its share, the user it runs as and its image's lock entry."""

AGENT_PORT = 8600  # the control API (`//loadgen:agent --port`)
READY_PATH = "/ready"
RESOLVE_PATH = "/resolve"  # ?target=URL...: the targets a share naming them is sent to (loadgen.resolve)
SHARE_SCHEMA = "servesweep.share/1"  # what a controller posts to /runs/ID (loadgen.share)
COUNT_ENV = "SERVESWEEP_GENERATORS"  # how many agents share the schedule
INDEX_ENV = "JOB_COMPLETION_INDEX"  # this agent's index: set by Kubernetes for an Indexed Job's pods
AGENT_UID = 65532  # the image's USER and the Job's runAsUser/runAsGroup (numeric: runAsNonRoot)
IMAGE_LOCK_NAME = "servesweep-loadgen"  # the generator image's key in deploy/images.lock.json


class AgentCallError(RuntimeError):
    """A call to an agent failed: refused, unreachable or not understood (the message
    names the agent). Every link to an agent raises it, however it reaches the agent."""
