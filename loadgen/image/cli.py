"""`bazel run //loadgen:image -- --repository REG/REPO`: build the generator image, run its
agent once (buildah), push it, and lock its digest."""

from __future__ import annotations

import click

from formats.agent import IMAGE_LOCK_NAME
from loadgen.image import build, requirements
from serving.image import cli_options


@click.command()
@click.option("--repository", required=True,
              help="Registry path to push to, e.g. us-docker.pkg.dev/PROJECT/REPO/servesweep-loadgen (no tag).")
@click.option("--tag", default="",
              help="Tag to push besides the digest (default: SUITE-<hash of sources and packages>).")
@click.option("--mirror", default="", metavar="URL",
              help="Debian archive for debootstrap (default: the one apt uses here).")
@click.option("--name", "lock_name", default=IMAGE_LOCK_NAME, show_default=True,
              help="Key of the image in the lock (what the generators' Job is rendered from).")
@click.option("--lock", "lock_file", default="deploy/images.lock.json", show_default=True,
              help="Lock file, workspace-relative.")
@cli_options.builder_options
@click.option("--no-run", is_flag=True, help="Do not run the image's agent before pushing (buildah only runs it).")
@click.option("--dry-run", is_flag=True, help="Print what would be installed and the build commands, and stop.")
def main(repository, tag, mirror, lock_name, lock_file, builder_name, work_dir, no_run, dry_run) -> None:
    """Build the load generator's image (Debian minbase, python3, the agent), push it, and
    record its digest."""
    with cli_options.stopping_cleanly(requirements.RequirementsError):
        spec = build.GeneratorImage(repository=repository, tag=tag, mirror=mirror)
        inputs = build.read_inputs(build.runfiles_root())
        with cli_options.work_dir(work_dir) as work:
            chosen = cli_options.chosen_builder(builder_name, work, click.echo)
            build.build_and_push(spec, inputs, work, builder=chosen, lock_path=cli_options.workspace_file(lock_file),
                                 lock_name=lock_name, run_first=not no_run, dry_run=dry_run, echo=click.echo)


if __name__ == "__main__":
    main()
