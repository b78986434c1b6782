"""Model cards for trained checkpoints: what it is, how it was made, how good it is."""
from __future__ import annotations

from pathlib import Path

from .fsutil import write_text_atomic
from .models.weights import sha256_file


def write_card(path: Path, ckpt: Path, facts: dict) -> None:
    cfg = facts["train_config"]
    rows = "\n".join(f"| {h['epoch']} | {h['loss']:.3f} | {h['top1']:.2%} | {h['top5']:.2%} | {h['minutes']:.1f} |"
                     for h in facts["history"])
    cmd = (f"edgeincep train --model {cfg['model']} --data {facts.get('data', 'fashion-mnist')} --width {cfg['width']} "
           f"--input-size {cfg['input_size']} --epochs {cfg['epochs']} --batch-size {cfg['batch_size']} "
           f"--lr {cfg['lr']} --seed {cfg['seed']} --threads {cfg['threads']} --out {ckpt.name}")
    text = f"""# {ckpt.name}

Reference model for edgeincep's offline default: **{facts['model']}** at full depth, width multiplier
**{facts['width']}**, trained from scratch on Fashion-MNIST (60k train images; evaluated on the 10k test set).

| fact | value |
|---|---|
| architecture | `{facts['model']}` (full block counts), width x{facts['width']} |
| parameters | {facts['params']:,} |
| input | {facts['preprocess']['input_size']} x {facts['preprocess']['input_size']} RGB (grey replicated), resize {facts['preprocess']['interpolation']}, crop_pct {facts['preprocess']['crop_pct']}, mean {facts['preprocess']['mean']}, std {facts['preprocess']['std']} |
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
    write_text_atomic(path, text)
