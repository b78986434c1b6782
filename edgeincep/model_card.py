"""Model cards for trained checkpoints: what it is, how it was made, how good it is."""
from __future__ import annotations

from pathlib import Path

from edgeincep.fsutil import write_text_atomic
from edgeincep.models.weights import sha256_file


def write_card(path: Path, ckpt: Path, facts: dict, init_card: Path | None = None) -> None:
    """Write the card; with --init, the starting checkpoint's own card (if given) is embedded, so the
    whole chain of commands that made the weights is in one place."""
    cfg = facts["train_config"]
    rows = "\n".join(f"| {h['epoch']} | {h['loss']:.3f} | {h['top1']:.2%} | {h['top5']:.2%} | {h['minutes']:.1f} |"
                     for h in facts["history"])
    cmd = (f"edgeincep train --model {cfg['model']} --data {facts.get('data', 'fashion-mnist')} --width {cfg['width']} "
           f"--input-size {cfg['input_size']} --epochs {cfg['epochs']} --batch-size {cfg['batch_size']} "
           f"--lr {cfg['lr']} --seed {cfg['seed']} --threads {cfg['threads']}"
           + (f" --max-shift {cfg['max_shift']}" if cfg.get("max_shift", 4) != 4 else "")
           + "".join(f" --teacher {Path(t).name}" for t in cfg.get("teachers") or ())
           + (f" --distill-alpha {cfg['distill_alpha']}" if cfg.get("teachers") else "")
           + (f" --init {facts['init']['source']}" if facts.get("init") else "") + f" --out {ckpt.name}")
    pre = facts["preprocess"]
    inp = (f"{pre['input_size']} x {pre['input_size']} RGB (grey replicated), resize {pre['interpolation']}, "
           f"crop_pct {pre['crop_pct']}, mean {pre['mean']}, std {pre['std']}")
    origin = "trained from scratch"
    if facts.get("init"):
        origin = f"trained from `{facts['init']['source']}` (its card follows below)"
    text = f"""# {ckpt.name}

Reference model for edgeincep's offline default: **{facts['model']}** at full depth, width multiplier
**{facts['width']}**, {origin} on Fashion-MNIST (60k train images; evaluated on the 10k test set).

| fact | value |
|---|---|
| architecture | `{facts['model']}` (full block counts), width x{facts['width']} |
| parameters | {facts['params']:,} |
| input | {inp} |
| classes | {facts['num_classes']}: {', '.join(facts['labels'])} |
| FP32 top-1 (10k test) | **{facts['top1']:.2%}** |
| FP32 top-5 (10k test) | {facts['top5']:.2%} (nearly saturated with 10 classes) |
| seed | {cfg['seed']} |
| wall time | {facts['wall_minutes']:.1f} min on {cfg['threads']} CPU threads |
| torch / edgeincep | {facts['torch']} / {facts['edgeincep']} |
| sha256 | `{sha256_file(ckpt)}` |

Command:

```
{cmd}
```

| epoch | loss (smoothed) | top-1 | top-5 | minutes |
|---|---|---|---|---|
{rows}
"""
    if facts.get("init"):
        text += _initial_card(ckpt, facts["init"], init_card)
    write_text_atomic(path, text)


def _initial_card(ckpt: Path, init: dict, init_card: Path | None) -> str:
    head = (f"\n## Starting weights\n\n`{init['source']}`, sha256 `{init['sha256']}`"
            + (f"; re-initialised: {', '.join(init['reinitialised'])}" if init["reinitialised"] else "") + ".\n")
    if init_card is None or not init_card.is_file():
        return head
    body = init_card.read_text().replace("\n# ", "\n### ").replace("\n## ", "\n### ")
    body = "##" + body if body.startswith("# ") else body
    return head + "\n" + body
