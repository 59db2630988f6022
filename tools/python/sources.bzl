"""`py_sources`: the first-party Python files a target runs with, listed and brought along.

For images: `//loadgen:image` copies exactly what `//loadgen:agent` imports (its transitive
`srcs`, generated ones included) instead of whole directories. The listing (`NAME.txt`,
one workspace-relative path a line, sorted) and the files themselves are the rule's
runfiles, so a `py_binary` with this target in its `data` finds both.
"""

def _py_sources_impl(ctx):
    sources = depset(transitive = [dep[PyInfo].transitive_sources for dep in ctx.attr.deps])
    ours = [f for f in sources.to_list() if not f.short_path.startswith("../")]
    listing = ctx.actions.declare_file(ctx.label.name + ".txt")
    ctx.actions.write(listing, "".join(sorted([f.short_path + "\n" for f in ours])))
    return [DefaultInfo(
        files = depset([listing]),
        runfiles = ctx.runfiles(files = [listing] + ours),
    )]

py_sources = rule(
    implementation = _py_sources_impl,
    attrs = {
        "deps": attr.label_list(providers = [PyInfo], mandatory = True),
    },
    doc = "Lists the first-party Python sources of `deps` (transitively) in NAME.txt.",
)
