"""Write edgeincep/data/imagenet_1k.tsv: the ImageNet-1k classes in timm's index order, from timm's wheel.

timm ships the 1000 WordNet synset ids in the standard index order (timm/data/_info/imagenet_synsets.txt) and
every synset's lemmas (imagenet_synset_to_lemma.txt). Taking both from one pinned wheel keeps our indices the
ones every timm ImageNet-1k checkpoint was trained with. The readable name is the first lemma; the two that
repeat (crane, maillot) carry their synset so that every name is unique. Run by hand when the pin changes:

    python ci/imagenet-labels.py            # pip downloads timm==$TIMM (no dependencies) into a temporary folder
"""
from __future__ import annotations

import collections
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

TIMM = "1.0.31"
OUT = Path(__file__).resolve().parents[1] / "edgeincep" / "data" / "imagenet_1k.tsv"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"timm=={TIMM}", "-d", tmp],
                       check=True)
        wheel = zipfile.ZipFile(next(Path(tmp).glob("timm-*.whl")))
        synsets = wheel.read("timm/data/_info/imagenet_synsets.txt").decode().split()
        lemmas = dict(line.split("\t", 1) for line in
                      wheel.read("timm/data/_info/imagenet_synset_to_lemma.txt").decode().splitlines())
    assert len(synsets) == 1000 == len(set(synsets))
    first = [lemmas[s].split(",")[0].strip() for s in synsets]
    repeated = {n for n, c in collections.Counter(first).items() if c > 1}
    rows = [f"{s}\t{n} ({s})\t{lemmas[s]}" if n in repeated else f"{s}\t{n}\t{lemmas[s]}"
            for s, n in zip(synsets, first, strict=True)]
    OUT.write_text(f"# ImageNet-1k classes in index order (timm {TIMM}): synset, name, WordNet lemmas\n"
                   + "\n".join(rows) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(rows)} classes)")


if __name__ == "__main__":
    main()
