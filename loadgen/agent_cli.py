"""`bazel run //loadgen:agent -- [--host H] [--port 8600] [--max-idle 30m]`: a generator agent
(thin over loadgen.agent; what an in-cluster generator pod runs)."""

from __future__ import annotations

import asyncio
import sys

import click

from formats import units
from formats.agent import AGENT_PORT
from loadgen import agent
from tools.python.runpath import user_path


@click.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--port", default=AGENT_PORT, show_default=True, type=click.IntRange(0, 65535),
              help="Port of the control API (0: any free one, printed).")
@click.option("--max-idle", default="30m", show_default=True,
              help="Exit after this long without a request (a controller that went away).")
@click.option("--hosts", "hosts_file", default=None, metavar="FILE",
              help="Resolve names from this hosts-format file before DNS (read at each run; how the "
                   "API double stands in for cluster DNS).")
def main(host: str, port: int, max_idle: str, hosts_file: str | None) -> None:
    """Serve the generator agent's control API: a controller (loadgen.remote) posts shares
    of runs, starts them at a common instant and collects their seconds."""
    try:
        idle_s = units.parse_duration(max_idle, positive=True)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--max-idle") from None

    def listening(bound: int) -> None:
        print(bound, flush=True)  # stdout's first line: the port (for whoever started it)
        click.echo(f"agent listening on {host}:{bound}; idle exit after {max_idle}", err=True)

    try:
        asyncio.run(agent.serve(host, port, max_idle_s=idle_s, on_listening=listening,
                                hosts_file=user_path(hosts_file) if hosts_file else None))
    except OSError as e:
        click.echo(f"error: cannot listen on {host}:{port}: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("agent: interrupted", err=True)


if __name__ == "__main__":
    main()
