"""The rungs of the escalation ladder, cheapest first; each is one class, registered by name.

Later rungs start from the best 8-bit candidate of the calibration rungs (its recipe and calibration
set), so a better range-setting carries into fallback, 16-bit activations and QAT.
"""
from __future__ import annotations

import math
import time

from edgeincep.console import err
from edgeincep.core.errors import OutOfTime
from edgeincep.escalation.base import Candidate, Context, Rung, register_rung
from edgeincep.recipes import with_patch
from edgeincep.validate.fallback import fallback_search


def _base(history: list[Candidate], budget) -> Candidate:
    """The best candidate of the PTQ and calibration rungs."""
    return max((c for c in history if c.info.get("rung") in ("ptq", "calibration")), key=lambda c: c.rank(budget))


@register_rung
class Ptq(Rung):
    name = "ptq"
    title = "INT8 as configured"

    def candidates(self, ctx: Context, history, make) -> list[Candidate]:
        return [make("as configured", lambda: ctx.backend.build(ctx.fp32, ctx.calib, ctx.recipe, ctx.out_dir),
                     ctx.recipe, ctx.calib, rung=self.name)]


@register_rung
class Calibration(Rung):
    name = "calibration"
    title = "other calibration settings"

    def candidates(self, ctx: Context, history, make) -> list[Candidate]:
        t, out, skipped = ctx.backend, [], []
        for i, (label, patch) in enumerate(t.calibration_variants(ctx.recipe), 1):
            recipe = with_patch(ctx.recipe, patch)
            folder = ctx.folder(f"calibration-{i}")
            out.append(make(label, lambda r=recipe, f=folder: t.build(ctx.fp32, ctx.calib, r, f),
                            recipe, ctx.calib, rung=self.name, patch=patch))
        for n in ctx.recipe.escalation.calibration_counts:
            if n <= len(ctx.calib):
                continue
            calib = ctx.calibration(n)
            if calib is None or len(calib) <= len(ctx.calib):
                skipped.append(f"{n} images (the calibration folder has fewer)")
                continue
            recipe = with_patch(ctx.recipe, {"calibration": {"count": n}})
            folder = ctx.folder(f"calibration-n{n}")
            out.append(make(f"{len(calib)} calibration images",
                            lambda r=recipe, c=calib, f=folder: t.build(ctx.fp32, c, r, f),
                            recipe, calib, rung=self.name, patch={"calibration": {"count": n}}))
        if not out:
            self.reason = (f"{t.name} has no other range-setting method"
                           + (f", and no larger calibration set: {'; '.join(skipped)}" if skipped else ""))
        return out


@register_rung
class Fallback(Rung):
    name = "fallback"
    title = "sensitive layers kept in float"

    def unavailable(self, ctx: Context) -> str | None:
        return None if ctx.recipe.fallback.enabled else "turned off in the recipe (fallback.enabled: false)"

    def candidates(self, ctx: Context, history, make) -> list[Candidate]:
        t, budget, folder = ctx.backend, ctx.recipe.budget, ctx.folder("fallback")
        base = _base(history, budget)
        ranked = t.rank_layers(base.artifact, ctx.fp32, base.calib, base.recipe, base.calib.x[:16])
        if ranked is None:
            found: dict = {}

            def restore():
                restored = t.restore_accuracy(ctx.fp32, base.calib, (ctx.probe.x, ctx.probe_targets), base.recipe,
                                              folder, deadline=ctx.deadline)
                if restored is not None:
                    found["art"], found["info"] = restored
                return found.get("art")

            if not t.has_restore_accuracy(base.recipe):
                self.reason = f"{t.name} has no layer-level float fallback"
                return []
            c = make("the runtime's accuracy restoration", restore, base.recipe, base.calib, rung=self.name)
            c.info |= {"method": found["info"].get("method"), "float_nodes": found["info"].get("float_nodes", [])}
            c.label = f"{len(c.info['float_nodes'])} layer(s) reverted to float by {found['info'].get('method')}"
            return [c]
        if not ranked:
            self.reason = "no quantized layer to keep in float"
            return []
        limit = ctx.recipe.fallback.max_float_nodes
        if not limit:
            self.reason = "fallback.max_float_nodes is 0"
            return []
        alone, built = _alone(ctx, base, ranked, folder)
        if alone["layers"]:
            # What each layer costs when it alone is float, measured on the probe, outranks the per-layer noise
            # estimate the ranking came from: the search keeps the layers that recover the most first.
            gain = {r["node"]: (r["top1_agreement"], r["sqnr_gain_db"] or -math.inf) for r in alone["layers"]}
            ranked = sorted(ranked[:len(gain)], key=lambda n: gain[n], reverse=True) + ranked[len(gain):]
        holder: dict = {}

        def rebuild(nodes):  # the search's first step is an alone build already made and scored
            if len(nodes) == 1 and nodes[0] in built:
                return built[nodes[0]][0]
            return t.build_keeping_float(ctx.fp32, base.calib, base.recipe, folder, nodes)

        def score(art):
            known = next((d for a, d in built.values() if a is art), None)
            return known if known is not None else ctx.score(art)

        def search():
            holder["res"] = fallback_search(ranked, rebuild, score, budget, limit, (base.artifact, base.drift),
                                            ctx.deadline)
            return holder["res"].artifact

        c = make(f"up to {limit} most sensitive layer(s) in float", search, base.recipe, base.calib, rung=self.name)
        res = holder["res"]
        if not res.float_nodes and not res.passed:
            raise OutOfTime("the fallback search had not made its first step")
        c.drift = res.drift
        c.label = f"{len(res.float_nodes)} most sensitive layer(s) in float"
        c.info |= {"float_nodes": res.float_nodes, "steps": res.steps, "alone": alone,
                   "stopped": any("stopped" in st for st in res.steps)}
        return [c]


def _alone(ctx: Context, base: Candidate, ranked: list[str], folder) -> tuple[dict, dict]:
    """Each of the `fallback.alone` most sensitive layers kept in float by itself, scored on the probe against
    the candidate it starts from: the drift each layer alone is responsible for, in PyTorch's module names.
    Also the artifacts and their drift by node, which the search reuses."""
    t, n = ctx.backend, ctx.recipe.fallback.alone
    built: dict = {}
    if not n:
        return {"layers": [], "reason": "turned off in the recipe (fallback.alone: 0)"}, built
    if t.single_float_layer:
        return {"layers": [], "reason": t.single_float_layer}, built
    modules = t.layer_modules(base.artifact, ctx.fp32, ranked[:n])
    rows: list[dict] = []
    record = {"layers": rows, "from": base.label}
    for i, node in enumerate(ranked[:n]):
        if time.monotonic() > ctx.deadline:
            record["stopped"] = f"the time budget was spent after {i} of {n}"
            break
        with err.status(f"{t.name}: escalation, layer {i + 1} of {n} in float alone"):
            art = t.build_keeping_float(ctx.fp32, base.calib, base.recipe, folder / f"alone-{i + 1}", [node])
            d = ctx.score(art)
        built[node] = (art, d)
        rows.append({"node": node, "module": modules.get(node), "top1_agreement": d["top1_agreement"],
                     "top1_drop_points": d.get("top1_drop_points"), "sqnr_db": d.get("sqnr_db"),
                     "agreement_gain": d["top1_agreement"] - base.drift["top1_agreement"],
                     "sqnr_gain_db": (d["sqnr_db"] - base.drift["sqnr_db"]
                                      if d.get("sqnr_db") is not None and base.drift.get("sqnr_db") is not None
                                      else None)})
    return record, built


@register_rung
class Activations16(Rung):
    name = "activations16"
    title = "16-bit activations, 8-bit weights"

    def unavailable(self, ctx: Context) -> str | None:
        patch = ctx.backend.sixteen_bit_activations
        return patch if isinstance(patch, str) else None

    def candidates(self, ctx: Context, history, make) -> list[Candidate]:
        base = _base(history, ctx.recipe.budget)
        patch = ctx.backend.sixteen_bit_activations
        recipe = with_patch(base.recipe, patch)
        folder = ctx.folder(self.name)
        return [make("16-bit activations", lambda: ctx.backend.build(ctx.fp32, base.calib, recipe, folder), recipe,
                     base.calib, rung=self.name, patch=patch)]


@register_rung
class Qat(Rung):
    name = "qat"
    title = "quantization-aware fine-tuning"

    def unavailable(self, ctx: Context) -> str | None:
        return None if ctx.qat is not None else "no labelled training folder (--train)"

    def candidates(self, ctx: Context, history, make) -> list[Candidate]:
        base = _base(history, ctx.recipe.budget)
        qat = ctx.qat(ctx.deadline)
        folder = ctx.folder(self.name)
        out = [make("QAT weights", lambda: ctx.backend.build_from_qat(qat, base.calib, base.recipe, folder),
                    base.recipe, base.calib, rung=self.name, qat=qat.record)]
        # A runtime that executes Q/DQ as written can take the fine-tuned grid itself; the probe decides.
        adopted = ctx.backend.adopt_qdq(qat, ctx.folder("qat-qdq"))
        if adopted is not None:
            out.append(make("QAT Q/DQ as exported", lambda: adopted, base.recipe, base.calib, rung=self.name,
                            qat=qat.record))
        short = qat.record.get("steps_done", qat.record.get("steps")) < qat.record.get("steps", 0)
        for c in out:
            c.info["stopped"] = short  # fine-tuned for fewer steps than asked: the time budget ran out
        return out
