"""`bazel run //serving:image -- --repository REG/REPO --model-dir DIR`: build, push, lock."""

from __future__ import annotations

import click

from serving.image import build, cli_options
from tools.python.runpath import user_path


@click.command()
@click.option(
    "--repository",
    required=True,
    help="Registry path to push to, e.g. us-docker.pkg.dev/PROJECT/REPO/tfs-resnet-cpu (no tag).",
)
@click.option("--model-dir", required=True, help="Model base path holding version directories (1/saved_model.pb).")
@click.option(
    "--model-name", default="resnet", show_default=True, help="TF Serving model name; baked in at /models/NAME."
)
@click.option(
    "--name",
    "lock_name",
    default="tfs-resnet-cpu",
    show_default=True,
    help="Key of the image in the lock (what sweep specs refer to).",
)
@click.option(
    "--tfs-version", default="2.19.0", show_default=True, help="TF Serving release whose devel image has the sources."
)
@click.option(
    "--cpu-opt",
    type=click.Choice(sorted(build.CPU_OPTIONS)),
    default="avx2",
    show_default=True,
    help="avx2: --config=release --copt=-mavx2 --copt=-mfma; native: --config=nativeopt (the build host's CPU).",
)
@click.option("--build-option", "extra", multiple=True, help="Extra TF Serving bazel build option (repeatable).")
@click.option("--bazel-options", default="--local_ram_resources=2048", show_default=True)
@click.option("--tag", default="", help="Tag to push besides the digest (default TFS_VERSION-CPU_OPT).")
@click.option("--platform", default="linux/amd64", show_default=True)
@click.option(
    "--lock", "lock_file", default="deploy/images.lock.json", show_default=True, help="Lock file, workspace-relative."
)
@cli_options.builder_options
@click.option("--dry-run", is_flag=True, help="Print the build commands and stop.")
def main(
    repository,
    model_dir,
    model_name,
    lock_name,
    tfs_version,
    cpu_opt,
    extra,
    bazel_options,
    tag,
    platform,
    lock_file,
    builder_name,
    work_dir,
    dry_run,
) -> None:
    """Build the CPU-optimised TF Serving image, push it, and record its digest."""
    with cli_options.stopping_cleanly():
        spec = build.ImageBuild(
            repository=repository,
            model_dir=user_path(model_dir),
            model_name=model_name,
            tfs_version=tfs_version,
            cpu_opt=cpu_opt,
            extra_build_options=tuple(extra),
            bazel_options=bazel_options,
            platform=platform,
            tag=tag,
        )
        with cli_options.work_dir(work_dir) as work:
            chosen = cli_options.chosen_builder(builder_name, work, click.echo)
            build.build_and_push(
                spec,
                lock_path=cli_options.workspace_file(lock_file),
                lock_name=lock_name,
                builder=chosen,
                dry_run=dry_run,
                echo=click.echo,
            )


if __name__ == "__main__":
    main()
