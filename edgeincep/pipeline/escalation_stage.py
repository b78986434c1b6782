"""The escalation ladder's place in a run: what every target's ladder shares (the probe images, larger
calibration sets, QAT made once), how candidates are scored, and the ladder's entry point for one target."""
from __future__ import annotations

from pathlib import Path

from edgeincep.backends.base import Backend
from edgeincep.console import err, note
from edgeincep.core.artifact import Artifact
from edgeincep.core.errors import DataError
from edgeincep.core.settings import RecipeBase
from edgeincep.data.folders import ImageSet, scan_folder
from edgeincep.pipeline.calibration_stage import calibration_labels, refuse_overlap
from edgeincep.quantize.calibration import CalibrationSet, load_calibration
from edgeincep.registry import get_backend
from edgeincep.validate.drift import drift_record
from edgeincep.validate.ort import reference_predictor


def make_data_split(split: str, class_names: list[str]) -> Path | None:
    """`make data`'s held-out Fashion-MNIST `split` folder (probe, train), where it exists and its classes are
    the model's (a model of other classes gets nothing by default)."""
    from edgeincep.paths import data_dir

    root = data_dir() / "fashion-mnist" / split
    if not root.is_dir() or not class_names:
        return None
    try:
        images = scan_folder(root)
    except DataError:
        return None
    return root if images.labelled and set(images.class_names) <= set(class_names) else None


def probe_scorer(fp32: Path, probe, threads: int):
    """Drift on the probe images: the ladder's decisions never look at the validation set."""
    from edgeincep.bench import interleaved_latency

    ref_pred = reference_predictor(fp32, threads)
    if str(fp32) not in probe.reference_logits:
        probe.reference_logits[str(fp32)] = ref_pred.predict(probe.x)
    ref = probe.reference_logits[str(fp32)]

    def score(art: Artifact) -> dict:
        pred = get_backend(art.target).load(art, threads)
        rec = drift_record(ref, pred.predict(probe.x), probe.labels, probe.paths, [])
        # What a rung costs: size, and batch-1 latency as a ratio to FP32 measured interleaved (a ratio
        # survives a noisy machine; absolute ms would not).
        lat = interleaved_latency([ref_pred, pred], probe.x[:1], runs=15, warmup=2)
        rec["size_bytes"] = art.size_bytes()
        rec["latency_vs_fp32"] = lat[pred.name]["p50_ms"] / lat[ref_pred.name]["p50_ms"]
        return rec

    return score, ref.argmax(1)


def build_escalating(t: Backend, fp32: Path, calib: CalibrationSet, recipe: RecipeBase, out_dir: Path, threads: int,
                     probe, *, calibration=None, qat=None) -> tuple[Artifact, dict]:
    """The target's INT8 artifact through the escalation ladder (plain PTQ first; each later rung only when the
    one before missed the budget on the probe), and the ladder's record."""
    from edgeincep.escalation.base import Context
    from edgeincep.escalation.ladder import climb

    esc = recipe.escalation
    if esc.rungs == ["ptq"]:  # no ladder: ship as built, and spend nothing on scoring
        return t.build(fp32, calib, recipe, out_dir), {"rungs": [{"rung": "ptq", "title": "INT8 as configured",
                                                                  "status": "not scored", "reason": "the recipe's "
                                                                  "ladder is [ptq]: shipped as built"}]}
    score, targets = probe_scorer(fp32, probe, threads)
    ctx = Context(t, fp32, calib, recipe, out_dir, probe, score, targets, calibration or (lambda n: None), qat)
    best, record = climb(ctx, esc.rungs, esc.time_budget_s)
    return best.artifact, record


class EscalationInputs:
    """What the ladders of one run share: the probe images, larger calibration sets, and QAT (made once)."""

    def __init__(self, model_name: str, weights: str, fp32: Path, pre, class_names: list[str], calib_root: Path,
                 images: ImageSet, probe_dir: Path | None, train_dir: Path | None, out_dir: Path, threads: int,
                 skip_bad: bool, calib_labels: Path | None = None):
        self.model_name, self.weights, self.fp32, self.pre, self.class_names = model_name, weights, fp32, pre, class_names
        self.calib_root, self.images, self.out_dir, self.threads, self.skip_bad = calib_root, images, out_dir, threads, skip_bad
        self.calib_labels = calib_labels
        self.probe_dir = probe_dir if probe_dir is not None else make_data_split("probe", class_names)
        self.train_dir = train_dir if train_dir is not None else make_data_split("train", class_names)
        self._probe, self._qat, self._calib = None, None, {}

    def probe(self, recipe: RecipeBase, calib: CalibrationSet):
        from edgeincep.escalation.probe import load_probe

        if self._probe is None:
            with err.status("preparing the probe images"):
                self._probe = load_probe(self.probe_dir, pre=self.pre, count=recipe.escalation.probe_images,
                                         class_names=self.class_names, calib_paths=calib.paths, calib_x=calib.x,
                                         calib_labels=calibration_labels(self.calib_root, calib, self.class_names,
                                                                         self.calib_labels),
                                         validation=self.images, skip_bad=self.skip_bad)
            for line in self._probe.summary(recipe.budget)["notes"]:
                note(line)
        return self._probe

    def calibration(self, seed: int):
        def larger(n: int) -> CalibrationSet | None:
            from edgeincep.data.folders import scan_folder

            if len(scan_folder(self.calib_root, labels_csv=self.calib_labels)) < n:
                return None
            if (n, seed) not in self._calib:
                self._calib[n, seed] = load_calibration(self.calib_root, self.pre, count=n, seed=seed,
                                                        skip_bad=self.skip_bad, labels_csv=self.calib_labels)
                refuse_overlap(self._calib[n, seed].paths, self.images, self.calib_root)
            return self._calib[n, seed]
        return larger

    def qat(self, recipe: RecipeBase, calib: CalibrationSet):
        if self.train_dir is None:
            return None

        def make(deadline: float):
            from edgeincep.pipeline.qat_stage import run_qat

            # Made once per run, by the first ladder that needs it and within that ladder's time budget; the
            # record says when the budget cut the fine-tuning short.
            if self._qat is None:
                self._qat = run_qat(self.model_name, self.weights, self.fp32, calib.x, self.train_dir,
                                    recipe.escalation.qat, self.probe(recipe, calib).x,
                                    self.out_dir / "escalation" / "qat", self.threads, self.skip_bad, deadline)
            return self._qat
        return make
