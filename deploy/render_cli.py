"""`bazel run //deploy:render -- SPEC --out DIR`: one Kustomize overlay per Config."""

from __future__ import annotations

import sys

import click

from deploy import generators, render, spec
from tools.python.runpath import user_path


@click.command()
@click.argument("spec_file", metavar="SPEC")
@click.option("--out", "out_dir", required=True, help="Directory to write base/ and one overlay per Config into.")
@click.option("--allow-tags", is_flag=True, help="Render an image that is not pinned by digest (tags can move).")
@click.option("--lock", "lock_file", default=None, help="Image lock to use instead of the spec's.")
@click.option("--check", is_flag=True, help="Also build each overlay with kubectl kustomize and validate the objects.")
@click.option("--generators", "generator_count", default=0, show_default=True, type=click.IntRange(min=0),
              help="Also render N in-cluster generator agents (an Indexed Job) and the sweep's RBAC, in generators/.")
@click.option("--generator-image", default=None, metavar="REF",
              help=f"The agents' image (default: the lock's {generators.LOCK_NAME!r} entry).")
def main(spec_file: str, out_dir: str, allow_tags: bool, lock_file: str | None, check: bool,
         generator_count: int, generator_image: str | None) -> None:
    """Render the Kubernetes manifests of every Config in a sweep SPEC."""
    try:
        lock_path = user_path(lock_file) if lock_file else None
        sweep = spec.load_sweep(user_path(spec_file), lock_path=lock_path)
        out = user_path(out_dir)
        job = None
        if generator_count:  # checked before anything is written
            image = generators.generator_image(spec.lock_file(sweep, lock_path), generator_image,
                                               allow_tags=allow_tags)
            job = generators.GeneratorJob(count=generator_count, image=image, sweep_id=sweep.id)
        dirs = render.render_sweep(sweep, out, allow_tags=allow_tags)
        failed = 0
        for c in sweep.configs:
            line = f"{c.id}  {c.name}  -> {dirs[c.id]}"
            if check:
                problems = render.validate_objects(render.kustomize_build(dirs[c.id]))
                line += "  ok" if not problems else "  INVALID: " + "; ".join(problems)
                failed += bool(problems)
            click.echo(line)
        click.echo(f"{len(dirs)} overlays for sweep {sweep.name} in {out}")
        if job is not None:
            where = generators.render(job, sweep.cluster, out)
            line = f"{job.count} generator agents ({job.image}) and the sweep's RBAC -> {where}"
            if check:
                problems = render.validate_objects(generators.manifests(job, sweep.cluster))
                line += "  ok" if not problems else "  INVALID: " + "; ".join(problems)
                failed += bool(problems)
            click.echo(line)
        if failed:
            sys.exit(1)
    except (spec.SpecError, render.RenderError, OSError) as e:  # spec.image turns lock errors into SpecError
        click.echo(f"error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
