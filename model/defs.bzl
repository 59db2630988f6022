"""`model_dir`: a TF Serving model directory (tree artifact) exported at build time."""

def _model_dir_impl(ctx):
    out = ctx.actions.declare_directory(ctx.attr.name)
    ctx.actions.run(
        outputs = [out],
        executable = ctx.executable._export,
        arguments = [
            "--out",
            out.path,
            "--name",
            ctx.attr.model_name,
            "--arch",
            ctx.attr.arch,
            "--seed",
            str(ctx.attr.seed),
        ],
        mnemonic = "ModelExport",
        progress_message = "Exporting %s model %s" % (ctx.attr.arch, ctx.label),
        env = {"TF_CPP_MIN_LOG_LEVEL": "2", "HOME": "/tmp"},
    )
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = [out]))]

model_dir = rule(
    implementation = _model_dir_impl,
    attrs = {
        "arch": attr.string(default = "tiny", values = ["tiny", "resnet50"]),
        "model_name": attr.string(mandatory = True),
        "seed": attr.int(default = 0),
        "_export": attr.label(default = "//model:export", executable = True, cfg = "exec"),
    },
    doc = "Holds <name>/<model_name>/1/ for tests and other targets.",
)
