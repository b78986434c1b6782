"""One loader for calibration and validation folders, labelled or not."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from edgeincep.core.errors import DataError
from edgeincep.core.preprocess import Preprocess
from edgeincep.data.folders import (
    balanced_subset,
    iter_batches,
    load_array,
    scan_folder,
)

CFG = Preprocess(input_size=75)


def test_class_subfolders_are_labelled_in_labels_txt_order(labelled_dir):
    (labelled_dir / "labels.txt").write_text("\n".join(reversed(sorted(p.name for p in labelled_dir.iterdir()
                                                                        if p.is_dir()))))
    s = scan_folder(labelled_dir)
    assert s.labelled and len(s) == 30 and s.class_names[0] == "tshirt_top"
    assert all(s.class_names[lab] == p.parent.name for p, lab in zip(s.paths, s.labels, strict=True))


def test_flat_folder_is_unlabelled(tmp_path, labelled_dir):
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in list(labelled_dir.rglob("*.png"))[:4]:
        (flat / p.name).write_bytes(p.read_bytes())
    s = scan_folder(flat)
    assert not s.labelled and len(s) == 4


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no images found"):
        scan_folder(tmp_path)
    with pytest.raises(DataError, match="not found"):
        scan_folder(tmp_path / "missing")


def test_balanced_subset_is_seeded_and_even(labelled_dir):
    s = scan_folder(labelled_dir)
    a, b = balanced_subset(s, 20, seed=1), balanced_subset(s, 20, seed=1)
    assert a.paths == b.paths
    assert set(Counter(a.labels).values()) == {2}
    assert balanced_subset(s, 20, seed=2).paths != a.paths


def test_batches_are_nchw_with_labels(labelled_dir):
    s = scan_folder(labelled_dir)
    batches = list(iter_batches(s, CFG, batch_size=8))
    assert [len(b[0]) for b in batches] == [8, 8, 8, 6]
    assert batches[0][0].shape == (8, 3, 75, 75)
    assert np.array_equal(np.concatenate([b[1] for b in batches]), np.asarray(s.labels))


def test_bad_files_fail_with_one_listing_error(labelled_dir):
    (labelled_dir / "bag" / "broken1.png").write_bytes(b"garbage")
    (labelled_dir / "coat" / "broken2.jpg").write_bytes(b"")
    with pytest.raises(DataError) as e:
        load_array(scan_folder(labelled_dir), CFG)
    msg = str(e.value)
    assert "2 unreadable image(s)" in msg and "broken1.png" in msg and "broken2.jpg" in msg and "--skip-bad" in msg


def test_skip_bad_skips_and_counts(labelled_dir):
    (labelled_dir / "bag" / "broken.png").write_bytes(b"garbage")
    s = scan_folder(labelled_dir)
    x, y = load_array(s, CFG, skip_bad=True)
    assert len(x) == len(y) == 30 and len(s.skipped) == 1
