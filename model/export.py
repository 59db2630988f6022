"""`bazel run //model:export -- --out DIR`: write a TF Serving model directory."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from model import exporter, graph
from tools.python.runpath import user_path


def _user_path(value: str | None) -> Path | None:
    """Paths on the command line are relative to where the user ran `bazel run`."""
    return None if value is None else user_path(value)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", required=True, help="Model base directory; the model goes to OUT/NAME/VERSION/.")
@click.option("--name", default="resnet", show_default=True, help="Model name (TF Serving --model_name).")
@click.option("--version", "version", default=1, show_default=True, type=int, help="Version directory number.")
@click.option("--arch", type=click.Choice(graph.ARCHITECTURES), default="resnet50", show_default=True,
              help="resnet50, or tiny: same signatures, a few KB, for fast tests.")
@click.option("--weights", default=None, help="Keras weights file (.h5/.weights.h5). Default: random weights.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for random weights and warm-up image.")
@click.option("--overwrite", is_flag=True, help="Replace an existing version directory.")
def main(out, name, version, arch, weights, seed, overwrite) -> None:
    """Export ResNet50 (or the tiny test model) with TF Serving's signatures and warm-up records."""
    options = exporter.ExportOptions(
        out=_user_path(out), name=name, version=version, arch=arch,
        weights=_user_path(weights), seed=seed, overwrite=overwrite,
    )
    try:
        result = exporter.export(options, log=lambda msg: click.echo(f"export: {msg}", err=True))
    except exporter.ExportError as err:
        raise click.ClickException(str(err)) from None
    click.echo(
        f"wrote {result.version_dir} ({result.bytes / 2**20:.1f} MiB, {result.seconds:.1f} s, "
        f"sha256 {result.tree_sha256[:16]})"
    )


if __name__ == "__main__":
    sys.exit(main())
