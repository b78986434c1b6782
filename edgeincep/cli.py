"""The `edgeincep` command line: thin click commands over the library.

Every user mistake surfaces as a UserError, printed as one `error:` line with that error's
exit code; a traceback appears only with --debug.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import sys
from pathlib import Path

import click
from rich.markup import escape

from edgeincep import __version__
from edgeincep.console import err, out
from edgeincep.core.errors import OutputError, UnexpectedError, UserError


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own usage errors and exits print themselves
        except KeyboardInterrupt:
            # Every `with` block has already removed its temp file on the way up. A second Ctrl-C, or a
            # finaliser re-raising the interrupt during interpreter shutdown (seen under load: the process
            # then died by SIGINT after this line), must not turn into a traceback: leave at once.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            err.print("[bold red]interrupted[/]: no partial artifact was kept")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        except Exception as e:  # the one place every failure becomes one line
            if ctx.obj and ctx.obj.get("debug"):
                raise
            user = e if isinstance(e, UserError) else _as_user_error(e)
            err.print(f"[bold red]error:[/] {escape(str(user))}", highlight=False, soft_wrap=True)
            sys.exit(user.exit_code)


# Errors that mean "this output cannot be written here", whichever library hit them.
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def _as_user_error(e: Exception) -> UserError:
    """One line for what no UserError caught: an unwritable output, else a labelled unexpected error."""
    if isinstance(e, OSError) and e.errno in _OUTPUT_ERRNOS:
        return OutputError(f"cannot write ({e.strerror})", e.filename) if e.filename else \
            OutputError(f"cannot write output ({e.strerror})")
    if isinstance(e, MemoryError):
        return UnexpectedError("out of memory; try a smaller --limit, batch size or calibration.chunk")
    first = " ".join(str(e).split())[:300] or "no message"
    return UnexpectedError(f"unexpected {type(e).__name__}: {first} (a bug or an unrecognised failure; "
                           "rerun with --debug for the traceback)")


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="edgeincep")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Inception-family classifiers to verified INT8 edge artifacts."""
    ctx.obj = {"debug": debug}


@main.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models_cmd(as_json: bool) -> None:
    """List the registered networks with size, cost and preprocessing."""
    from rich.table import Table

    from edgeincep.models import get_spec, list_models
    from edgeincep.models.stats import model_stats

    rows = []
    for name in list_models():
        spec = get_spec(name)
        st = model_stats(name)
        rows.append({"name": name, "params": st["params"], "gmacs": round(st["macs"] / 1e9, 2),
                     **spec.preprocess.to_dict(), "classifier": spec.classifier,
                     "num_classes": spec.num_classes, "checkpoints": list(spec.hub_ids), "layout": spec.paper})
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="edgeincep models")
    for col in ("name", "params", "GMACs", "input", "mean / std", "crop_pct", "interp.", "classifier"):
        table.add_column(col, justify="right" if col in ("params", "GMACs", "input", "crop_pct") else "left",
                         no_wrap=col in ("name", "params"))
    for r in rows:
        table.add_row(r["name"], f"{r['params']:,}", f"{r['gmacs']:.2f}", str(r["input_size"]),
                      f"{_fmt(r['mean'])} / {_fmt(r['std'])}", f"{r['crop_pct']:g}", r["interpolation"],
                      r["classifier"])
    out.print(table)


def _fmt(v) -> str:
    return ",".join(f"{x:.3g}" for x in v) if len(set(v)) > 1 else f"{v[0]:.3g}"


@main.command("export")
@click.option("--model", "model_name", required=True, help="Registered model name (see `edgeincep models`).")
@click.option("--weights", default="synthetic", show_default=True,
              help="Checkpoint: FILE (.safetensors/.pt/.pth), hf-hub:ORG/NAME, facenet:vggface2, "
                   "'synthetic' (deterministic weights, for speed and plumbing only) or 'none' (random init).")
@click.option("--target", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("out"),
              show_default=True)
@click.option("--input-size", type=int, default=None, help="Square input size in px (>= 75); default: the model's.")
@click.option("--width", type=float, default=None, help="Width multiplier (default: checkpoint's, else 1.0).")
@click.option("--num-classes", type=int, default=None)
@click.option("--verify-images", type=click.Path(path_type=Path), default=None,
              help="Images to check ONNX Runtime against PyTorch (default: the shipped calibration set).")
@click.option("--verify-count", type=int, default=16, show_default=True)
@click.option("--opset", type=int, default=17, show_default=True)
@click.option("--skip-bad", is_flag=True, help="Skip unreadable images instead of failing.")
@click.option("--labels", "labels", default=None, metavar="SET|FILE",
              help="Class names: 'imagenet-1k' (the 1000 ImageNet classes in timm's order) or a file (one name a "
                   "line, or a JSON list). Default: the checkpoint's own, or its hub id's label set.")
def export_cmd(model_name, weights, target, out_dir, input_size, width, num_classes, verify_images, verify_count,
               opset, skip_bad, labels) -> None:
    """Export a model to FP32 ONNX, verified against PyTorch."""
    from edgeincep.pipeline.export_stage import run_export

    result = run_export(model_name, weights=weights, out_dir=out_dir, input_size=input_size, width=width,
                        num_classes=num_classes, verify_images=verify_images, verify_count=verify_count,
                        opset=opset, skip_bad=skip_bad, labels=labels)
    out.print(f"[green]wrote[/] {result.path} ({result.size_bytes / 1e6:.1f} MB) in {result.seconds:.1f} s; "
              f"ORT vs PyTorch max |diff| {result.max_abs_diff:.2e} (tol {result.tolerance:.2e}), "
              f"top-1 agreement {result.top1_agreement:.0%} on {result.n_images} images")


@main.group("data")
def data_grp() -> None:
    """Prepare image folders."""


@data_grp.command("fashion-mnist")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("data/fashion-mnist"),
              show_default=True)
@click.option("--calib-per-class", type=int, default=50, show_default=True)
@click.option("--val-limit", type=int, default=None, help="Balanced subset of the 10k test images (default: all).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--source", type=click.Path(path_type=Path), default=None,
              help="Folder with the four *-ubyte.gz files (default: Debian's).")
@click.option("--probe-per-class", type=int, default=200, show_default=True)
@click.option("--train-per-class", type=int, default=500, show_default=True)
def fashion_mnist_cmd(out_dir, calib_per_class, val_limit, seed, source, probe_per_class, train_per_class) -> None:
    """Write Fashion-MNIST as class folders: calib/, probe/ and train/ (disjoint pieces of the train split)
    and val/ (the test split)."""
    from edgeincep.data import fashion_mnist as fm
    from edgeincep.paths import DEFAULT_CALIBRATION

    with err.status("writing Fashion-MNIST image folders"):
        counts = fm.export_folders(out_dir, calib_per_class=calib_per_class, val_limit=val_limit, seed=seed,
                                   probe_per_class=probe_per_class, train_per_class=train_per_class,
                                   source=source or fm.DEBIAN_DIR, shipped_calibration=DEFAULT_CALIBRATION)
    out.print(f"[green]wrote[/] {counts['calib']} calibration, {counts['probe']} probe and {counts['train']} "
              f"training images (train split) and {counts['val']} validation images (test split) under {out_dir}")


@main.command("validate")
@click.argument("reference", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("artifacts", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--images", "images_dir", type=click.Path(path_type=Path), required=True,
              help="Labelled (class subfolders) or unlabelled image folder.")
@click.option("--limit", type=int, default=None, help="Class-balanced, seeded subset of this many images.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=0, help="Runtime threads (0: the runtime's default).")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--skip-bad", is_flag=True)
@click.option("--val-labels", "val_labels", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV labelling a flat validation folder: a file,label header (or Kaggle's LOC_val_solution.csv).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def validate_cmd(reference, artifacts, images_dir, limit, seed, threads, batch_size, skip_bad, json_out,
                 val_labels) -> None:
    """Accuracy of the FP32 REFERENCE ONNX and each ARTIFACT, and each artifact's drift from it."""
    from edgeincep.data.folders import select_images
    from edgeincep.fsutil import write_text_atomic
    from edgeincep.pipeline.artifacts import artifact_for_file
    from edgeincep.pipeline.validate_stage import validate
    from edgeincep.report.summary import print_validation

    if not reference.is_file():
        raise UserError("reference ONNX not found", reference)
    arts = [artifact_for_file(p) for p in artifacts]
    record = validate(reference, arts, select_images(images_dir, limit, seed, val_labels), threads=threads,
                      batch_size=batch_size, skip_bad=skip_bad)
    print_validation(record)
    if json_out:
        write_text_atomic(json_out, json.dumps(record, indent=2))


@main.command("attribute")
@click.argument("fp32", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--images", "images_dir", type=click.Path(path_type=Path), default=None,
              help="Images to measure on (default: the shipped calibration set; never needs labels).")
@click.option("--count", type=int, default=32, show_default=True, help="Class-balanced, seeded subset of the images.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--model-explorer", "explorer_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write one Model Explorer node-data JSON per artifact here (overlay on the FP32 ONNX graph).")
def attribute_cmd(fp32, artifacts, images_dir, count, json_out, html_out, explorer_dir) -> None:
    """Each INT8 ARTIFACT's error layer by layer against the FP32 ONNX, named by PyTorch module."""
    import numpy as np

    from edgeincep.attribution.layers import attribute, model_explorer_node_data
    from edgeincep.data.folders import iter_batches, select_images
    from edgeincep.export.onnx import preprocess_from_metadata, read_metadata
    from edgeincep.fsutil import write_text_atomic
    from edgeincep.paths import default_calibration
    from edgeincep.pipeline.artifacts import artifact_for_file
    from edgeincep.report.attribution import print_table, write_html

    if not fp32.is_file():
        raise UserError("FP32 ONNX not found", fp32)
    if count < 1:
        raise UserError(f"--count must be at least 1, not {count}")
    pre = preprocess_from_metadata(read_metadata(fp32), fp32)
    arts = [artifact_for_file(p) for p in artifacts]
    images = select_images(images_dir or default_calibration(), count)
    x = np.concatenate([b for b, _, _ in iter_batches(images, pre, 64)])
    short = [a.target + (" (peer default)" if a.meta.get("peer") else "") for a in arts]
    labels = [s if short.count(s) == 1 else a.path.name for s, a in zip(short, arts, strict=True)]
    with err.status(f"running FP32 and {len(arts)} artifact(s) layer by layer on {len(x)} images"):
        record = attribute(fp32, {n: (a.target, a.path) for n, a in zip(labels, arts, strict=True)}, x)
    print_table(record)
    if json_out:
        err.print(f"wrote {write_text_atomic(json_out, json.dumps(record, indent=2))}")
    if html_out:
        err.print(f"wrote {write_html(record, html_out)}")
    if explorer_dir:
        for name in record["artifacts"]:
            path = write_text_atomic(Path(explorer_dir) / f"{name}.node_data.json",
                                     json.dumps(model_explorer_node_data(record, name), indent=1))
            err.print(f"wrote {path}")


@main.command("bench")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--threads", type=int, default=0, help="Runtime threads (0: every core this process may use).")
@click.option("--batch", type=int, default=8, show_default=True, help="Batch size of the throughput runs.")
@click.option("--runs", type=int, default=30, show_default=True, help="Interleaved rounds at batch 1.")
@click.option("--batch-runs", type=int, default=10, show_default=True, help="Interleaved rounds at --batch.")
@click.option("--warmup", type=int, default=5, show_default=True)
@click.option("--no-memory", is_flag=True, help="Skip the per-artifact fresh-process load-time and memory probe.")
@click.option("--serving-seconds", type=float, default=3.0, show_default=True,
              help="Per artifact and round, the runtime's own throughput mode (OpenVINO: THROUGHPUT hint); 0: skip.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def bench_cmd(artifacts, threads, batch, runs, batch_runs, warmup, no_memory, serving_seconds, json_out,
              html_out) -> None:
    """Latency, throughput, load time, memory and size of each ARTIFACT, measured side by side."""
    from edgeincep.bench.measure import BenchSettings, benchmark
    from edgeincep.fsutil import write_text_atomic
    from edgeincep.pipeline.artifacts import artifact_for_file
    from edgeincep.report.bench import print_table, write_html

    for name, value, low in (("--threads", threads, 0), ("--batch", batch, 1), ("--runs", runs, 1),
                             ("--batch-runs", batch_runs, 1), ("--warmup", warmup, 0),
                             ("--serving-seconds", serving_seconds, 0)):
        if value < low:
            raise UserError(f"{name} must be at least {low}, not {value}")
    arts = [artifact_for_file(p) for p in artifacts]
    record = benchmark(arts, BenchSettings(threads=threads, batch=batch, runs=runs, batch_runs=batch_runs,
                                           warmup=warmup, memory=not no_memory, serving_seconds=serving_seconds))
    print_table(record)
    if json_out:
        err.print(f"wrote {write_text_atomic(json_out, json.dumps(record, indent=2))}")
    if html_out:
        err.print(f"wrote {write_html(record, html_out)}")


@main.command("peers")
@click.argument("fp32", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--calib", "calib_dir", type=click.Path(path_type=Path), default=None,
              help="Calibration image folder (default: the shipped calibration set).")
@click.option("--count", type=int, default=300, show_default=True,
              help="Calibration images (class-balanced, seeded: the same ones a run with this count uses).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--target", "targets", multiple=True, help="Only these targets' peers (repeatable).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def peers_cmd(fp32, out_dir, calib_dir, count, seed, targets, json_out) -> None:
    """Each runtime's own INT8 recipe with its defaults, built from the FP32 ONNX, to bench beside ours."""
    from edgeincep.bench.peers import build_peers, peer_targets
    from edgeincep.export.onnx import preprocess_from_metadata, read_metadata
    from edgeincep.fsutil import write_text_atomic
    from edgeincep.paths import default_calibration
    from edgeincep.quantize.calibration import load_calibration

    if not fp32.is_file():
        raise UserError("FP32 ONNX not found", fp32)
    if count < 1:
        raise UserError(f"--count must be at least 1, not {count}")
    peer_targets(list(targets))
    pre = preprocess_from_metadata(read_metadata(fp32), fp32)
    calib = load_calibration(calib_dir or default_calibration(), pre, count=count, seed=seed)
    records = build_peers(fp32, calib, out_dir, list(targets))
    for r in records:
        if "skipped" in r:
            out.print(f"[yellow]skipped[/] {r['peer']}: {r['skipped']}")
        else:
            out.print(f"{r['peer']}: {r['artifact']['path']}")
    if json_out:
        write_text_atomic(json_out, json.dumps({"fp32": str(fp32), "calibration_images": len(calib),
                                                "peers": records}, indent=2))


@main.command("run")
@click.option("--model", "model_name", required=True)
@click.option("--weights", default="reference", show_default=True,
              help="'reference' (the committed Fashion-MNIST model) or any --weights value of `export`.")
@click.option("--target", default="all", show_default=True, help="A target name, or 'all' that run here.")
@click.option("--val", "val_dir", type=click.Path(path_type=Path), required=True, help="Validation image folder.")
@click.option("--calib", "calib_dir", type=click.Path(path_type=Path), default=None,
              help="Calibration image folder (default: the shipped calibration set).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--limit", type=int, default=None, help="Validate on a balanced subset of this many images.")
@click.option("--threads", type=int, default=0)
@click.option("--skip-bad", is_flag=True)
@click.option("--recipe", "recipe_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Recipe YAML (default: recipes/<model>.<target>.yaml, else recipes/default.<target>.yaml).")
@click.option("--wheels", is_flag=True,
              help="Device bundles carry their runtime's wheels for the device (offline `deploy --setup`).")
@click.option("--ray", "use_ray", is_flag=True,
              help="Validate on Ray: the images split across tasks (a local runtime, or --ray-address).")
@click.option("--ray-address", default=None, help="With --ray: join this Ray cluster (HOST:PORT).")
@click.option("--probe", "probe_dir", type=click.Path(path_type=Path), default=None,
              help="Held-out labelled images the escalation ladder scores its rungs on (default: `make data`'s "
                   "data/fashion-mnist/probe for a model of its classes, else the calibration images).")
@click.option("--train", "train_dir", type=click.Path(path_type=Path), default=None,
              help="Labelled training images for the ladder's quantization-aware fine-tuning (default: `make "
                   "data`'s data/fashion-mnist/train for a model of its classes).")
@click.option("--labels", "labels", default=None, metavar="SET|FILE",
              help="Class names: 'imagenet-1k' (the 1000 ImageNet classes in timm's order) or a file (one name a "
                   "line, or a JSON list). Default: the checkpoint's own, or its hub id's label set.")
@click.option("--val-labels", "val_labels", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV labelling a flat validation folder: a file,label header (or Kaggle's LOC_val_solution.csv).")
@click.option("--calib-labels", "calib_labels", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV labelling a flat calibration folder (as --val-labels).")
def run_cmd(model_name, weights, target, val_dir, calib_dir, out_dir, limit, threads, skip_bad, recipe_path,
            wheels, use_ray, ray_address, probe_dir, train_dir, labels, val_labels, calib_labels) -> None:
    """The whole pipeline: export, build every target, validate drift, gate, write reports."""
    from edgeincep.data.folders import scan_folder
    from edgeincep.pipeline.run import run_pipeline
    from edgeincep.recipes import load_recipe_file

    # Fail in the first second, not after the export: a bad recipe or validation folder is known up front.
    if recipe_path is not None:
        load_recipe_file(recipe_path)
    scan_folder(val_dir, labels_csv=val_labels)
    if calib_labels is not None:
        from edgeincep.paths import default_calibration

        scan_folder(calib_dir or default_calibration(), labels_csv=calib_labels)
    run_pipeline(model_name, weights=weights, target=target, val_dir=val_dir, calib_dir=calib_dir,
                 out_dir=out_dir, limit=limit, threads=threads, skip_bad=skip_bad, recipe_path=recipe_path,
                 wheels=wheels, ray=use_ray or ray_address is not None, ray_address=ray_address,
                 probe_dir=probe_dir, train_dir=train_dir, labels=labels, val_labels=val_labels,
                 calib_labels=calib_labels)


@main.command("train")
@click.option("--model", "model_name", required=True)
@click.option("--data", "data_src", default="fashion-mnist", show_default=True,
              help="'fashion-mnist' (Debian's dataset-fashion-mnist) or a labelled image folder with train/ and val/.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Checkpoint to write (.safetensors).")
@click.option("--width", type=float, default=0.125, show_default=True)
@click.option("--input-size", type=int, default=75, show_default=True)
@click.option("--epochs", type=int, default=6, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=0.2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--max-shift", type=int, default=4, show_default=True,
              help="Random shift augmentation in pixels at input size (0: flips only).")
@click.option("--teacher", "teachers", multiple=True,
              help="Distil from this trained checkpoint (repeatable: logits are averaged).")
@click.option("--distill-alpha", type=float, default=0.5, show_default=True,
              help="Weight of the teachers' soft targets (the labels get the rest).")
@click.option("--init", "init", default=None,
              help="Start from these weights (any --weights value of `export`) instead of from scratch.")
@click.option("--card", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a model card (Markdown) here.")
def train_cmd(model_name, data_src, out_path, width, input_size, epochs, batch_size, lr, seed, threads, max_shift,
              teachers, distill_alpha, init, card) -> None:
    """Train a (narrow) network on Fashion-MNIST or your own image folders, from scratch or from --init."""
    from edgeincep.model_card import write_card
    from edgeincep.models import get_spec
    from edgeincep.train import TrainConfig, train
    from edgeincep.training_data import load_training_data

    get_spec(model_name)
    cfg = TrainConfig(model=model_name, width=width, input_size=input_size, epochs=epochs, batch_size=batch_size,
                      lr=lr, seed=seed, threads=threads, max_shift=max_shift, init=init,
                      teachers=tuple(teachers), distill_alpha=distill_alpha)
    with err.status("loading training data"):
        tx, ty, vx, vy, names = load_training_data(data_src)
    facts = train(cfg, tx, ty, vx, vy, names, out_path)
    facts["data"] = data_src
    if card:
        init_card = Path(init).with_suffix(".md") if init and Path(init).is_file() else None
        write_card(card, out_path, facts, init_card)
    out.print(f"[green]wrote[/] {out_path}: test top-1 {facts['top1']:.2%}, top-5 {facts['top5']:.2%} "
              f"after {epochs} epochs in {facts['wall_minutes']:.1f} min")


@main.command("deploy")
@click.argument("bundle", required=False, type=click.Path(path_type=Path))
@click.option("--host", "host", required=True, help="user@host (or host: your user name); an IPv6 address in [].")
@click.option("--port", type=int, default=None, help="SSH port (default 22).")
@click.option("--identity", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Private key to log in with (default: ssh-agent, then ~/.ssh/id_*).")
@click.option("--known-hosts", "known_hosts", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="known_hosts file to check and record host keys in (default: ~/.ssh/known_hosts).")
@click.option("--accept-new-host-key", is_flag=True,
              help="Trust and record the key of a host known_hosts has no key for (never a changed key).")
@click.option("--dest", default="~/edgeincep", show_default=True, help="Deploy root on the device.")
@click.option("--check", is_flag=True, help="Run the bundle's check on the device; switch in only if top-1 matches.")
@click.option("--setup", is_flag=True,
              help="Give the release a virtual environment with the bundle's runtime, from the wheels it carries "
                   "(pip --no-index: no network needed on the device); reused by later releases of the same runtime.")
@click.option("--index", is_flag=True,
              help="With --setup: install from the device's package index when the bundle has no wheels for it.")
@click.option("--rollback", is_flag=True, help="Make the previous version current again (BUNDLE or --name).")
@click.option("--status", "show_status", is_flag=True, help="Show and re-verify what is deployed (BUNDLE or --name).")
@click.option("--name", default=None, help="Bundle name on the device, for --rollback/--status without BUNDLE.")
@click.option("--remote-python", default="python3", show_default=True, help="Python 3.8+ on the device.")
def deploy_cmd(bundle, host, port, identity, known_hosts, accept_new_host_key, dest, check, setup, index, rollback,
               show_status, name, remote_python) -> None:
    """Copy BUNDLE to a device over SSH, verify it there and switch it in atomically (previous kept)."""
    from edgeincep.deploy import report, ssh

    target = ssh.parse_target(host, port)
    hosts = ssh.KnownHosts(known_hosts or ssh.default_known_hosts(),
                           () if known_hosts else (ssh.GLOBAL_KNOWN_HOSTS,))
    common = {"dest": dest, "known_hosts": hosts, "identity": identity, "remote_python": remote_python}
    if rollback or show_status:
        if rollback and show_status:
            raise UserError("--rollback and --status do not go together")
        label = name or (bundle.name.removesuffix(".tar.gz") if bundle else None)
        if not label:
            raise UserError("name the bundle: BUNDLE or --name NAME")
        if rollback:
            report.print_rollback(ssh.rollback(label, target, **common))
        else:
            report.print_status(ssh.status(label, target, **common))
        return
    if bundle is None:
        raise UserError("missing BUNDLE (a bundle folder or its .tar.gz)")
    with report.upload_progress(target.label) as (on_start, on_bytes, on_stage):
        result = ssh.deploy(bundle, target, accept_new=accept_new_host_key, check=check, setup=setup, index=index,
                            on_start=on_start, on_bytes=on_bytes, on_stage=on_stage, **common)
    report.print_deploy(result)


@main.command("sweep")
@click.option("--model", "models", multiple=True, required=True, help="A model (repeatable).")
@click.option("--target", "targets", multiple=True, required=True, help="A target (repeatable).")
@click.option("--grid", "grid_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Sweep YAML: grid of dotted recipe keys -> values, optional random: {trials, seed}.")
@click.option("--val", "val_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--weights", default="reference", show_default=True)
@click.option("--limit", type=int, default=None, help="Validate each trial on a balanced subset of this many images.")
@click.option("--store", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where trials write their artifacts and results; on a cluster, a folder every node sees "
                   "(default: OUT/store).")
@click.option("--ray-address", default=None, envvar="RAY_ADDRESS",
              help="Join this Ray cluster (HOST:PORT); default: a local Ray runtime for this command.")
@click.option("--no-ray", is_flag=True, help="Run the trials one after another in this process.")
@click.option("--threads", type=int, default=1, show_default=True, help="Runtime threads per trial.")
def sweep_cmd(models, targets, grid_file, val_dir, out_dir, weights, limit, store, ray_address, no_ray,
              threads) -> None:
    """Build and validate every (model, target, recipe variant) as a Ray task; Pareto fronts and winning recipes."""
    from edgeincep.data.folders import scan_folder
    from edgeincep.report.sweep import print_sweep, sweep_progress, write_reports
    from edgeincep.sweep.run import sweep
    from edgeincep.sweep.space import load_space, variants

    space = load_space(grid_file)
    scan_folder(val_dir)
    total = len(models) * len(targets) * len(variants(space))
    with sweep_progress(total) as on_event:
        record = sweep(list(models), list(targets), space, weights=weights, val_dir=val_dir, out_dir=out_dir,
                       limit=limit, store=store, use_ray=not no_ray, address=ray_address, threads=threads,
                       on_event=on_event, on_export=lambda m: err.print(f"exporting {m} into the store"))
    print_sweep(record)
    for path in write_reports(record, Path(out_dir)):
        err.print(f"wrote {path}")
    err.print(f"wrote {Path(out_dir) / 'sweep.json'}")


@main.group("fleet")
def fleet_group() -> None:
    """Validate a bundle on a shelf of real boards over SSH."""


@fleet_group.command("validate")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--hosts", "hosts_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Inventory YAML: boards with host, port, user, identity, device kind, labels.")
@click.option("--images", "images_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Image folder (class subfolders: on-device top-1/top-5 too).")
@click.option("--fp32", "fp32_onnx", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The FP32 ONNX the bundle was made from, for agreement with FP32 per board (default: the "
                   "one `edgeincep run` left beside the bundle's source artifact, if it is there).")
@click.option("--shard-size", type=click.IntRange(1, 100_000), default=64, show_default=True)
@click.option("--no-deploy", is_flag=True, help="Use what the boards run now (re-verified and checked) instead of "
                                               "deploying BUNDLE first.")
@click.option("--setup", is_flag=True, help="Deploy with --setup (the bundle's wheels into an environment).")
@click.option("--ray", "use_ray", is_flag=True,
              help="Run each board's shard loop as a Ray task on a node offering `board:<device>` resources.")
@click.option("--ray-address", default=None, help="With --ray: the Ray cluster (HOST:PORT); default a local runtime.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def fleet_validate_cmd(bundle, hosts_file, images_dir, fp32_onnx, shard_size, no_deploy, setup, use_ray, ray_address,
                       json_out, html_out) -> None:
    """Deploy BUNDLE to the matching boards and classify IMAGES on them, sharded; compare with the host.

    Exit 13 when a board's results differ from the host's beyond the bundle's tolerance, 14 when some images
    were classified by no board."""
    import json as _json

    from edgeincep.fleet.inventory import load_inventory
    from edgeincep.fleet.validate import Fleet, verdict
    from edgeincep.fsutil import write_text_atomic
    from edgeincep.report.fleet import fleet_progress, print_fleet, write_html

    inventory = load_inventory(hosts_file)
    if fp32_onnx is not None and not fp32_onnx.is_file():
        raise UserError("FP32 ONNX not found", fp32_onnx)
    with fleet_progress() as on_event:
        record = Fleet(bundle, inventory, deploy=not no_deploy, setup=setup, on_event=on_event, ray=use_ray,
                       ray_address=ray_address).run(images_dir, shard_size=shard_size, fp32=fp32_onnx)
    print_fleet(record)
    if json_out:
        err.print(f"wrote {write_text_atomic(json_out, _json.dumps(record, indent=1, default=str))}")
    if html_out:
        err.print(f"wrote {write_html(record, html_out)}")
    problem = verdict(record)
    if problem is not None:
        raise problem


class _Devices(click.Choice):
    """The devices the registered backends write bundles for, found when the option is first used
    (so `edgeincep --help` imports no backend)."""

    def __init__(self):
        super().__init__([])

    @property
    def choices(self):
        from edgeincep.pipeline.bundle_stage import bundle_devices

        return bundle_devices()

    @choices.setter
    def choices(self, _value) -> None:
        pass


@main.command("bundle")
@click.option("--device", type=_Devices(), required=True)
@click.argument("artifact", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--images", "images_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to pick the sample images for `run.py --check` (default: the validation folder in "
                   "report.json beside the artifact, else the shipped calibration set).")
@click.option("--threads", type=int, default=0)
@click.option("--wheels", is_flag=True,
              help="Carry the runtime's pinned wheels for the device's platform, so `deploy --setup` needs no "
                   "network on the device.")
@click.option("--device-python", default=None, metavar="X.Y",
              help="The device's CPython for --wheels (default: the device's usual: 3.11; Jetson 3.10).")
def bundle_cmd(device, artifact, out_dir, images_dir, threads, wheels, device_python) -> None:
    """Write a device bundle (folder + .tar.gz) for one artifact: model, runner, labels, preprocessing, README."""
    from edgeincep.pipeline.bundle_stage import bundle_artifact

    if device_python is not None and not wheels:
        raise UserError("--device-python names the Python of the bundled wheels: add --wheels")
    with err.status(f"writing the {device} bundle" + (" with the device's wheels" if wheels else "")):
        res = bundle_artifact(device, artifact, out_dir, images_dir=images_dir, threads=threads, wheels=wheels,
                              device_python=device_python)
    info = res.to_dict()
    size = sum(int(e["size"]) for e in res.manifest["files"].values())
    extra = f", {info['wheels_bytes'] / 1e6:.1f} MB of them the device's wheels" if info["wheels_bytes"] else ""
    out.print(f"[green]wrote[/] {res.folder} and {res.archive} ({len(res.manifest['files'])} files, "
              f"{size / 1e6:.1f} MB{extra}; archive {info['archive_bytes'] / 1e6:.1f} MB)")


if __name__ == "__main__":  # pragma: no cover
    main()
