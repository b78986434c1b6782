"""A board's numbers against the host's, and what the exit code says about a run."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeincep.fleet.validate import FleetDisagreement, FleetIncomplete, board_record, verdict

STEPS = {"output_steps": 2, "scale": 0.5, "zero_point": 0}
NAMES = ["cat", "dog", "fox"]


def test_output_codes_beyond_the_tolerance_and_flipped_top1_are_counted_and_listed():
    host = np.array([[4.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 2.0], [0.0, 0.0, 5.0]], np.float32)
    board = host.copy()
    board[1, 2] += 1.5  # 3 output steps: beyond, though top-1 stays
    board[2] = [1.0, 0.0, 0.5]  # top-1 cat instead of fox
    labels = np.array([0, 1, 2, 2])
    rec = board_record(board, host, host, labels, [Path(f"{i}.png") for i in range(4)], NAMES, STEPS)
    assert rec["beyond_tolerance"] == 2 and rec["max_difference"] == 3
    assert rec["disagreement_list"] == [{"image": "2.png", "host": "fox", "device": "cat"}]
    assert rec["agreement_host_int8"] == 0.75 and rec["identical_logits"] == 0.5
    assert rec["top1"] == 0.75 and rec["host_top1"] == 1.0


def test_an_unreadable_image_is_left_out_of_the_comparison_not_counted_as_a_flip():
    host = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    board = np.array([[1.0, 0.0, 0.0], [np.nan] * 3], np.float32)
    rec = board_record(board, host, None, None, [Path("a.png"), Path("b.png")], NAMES, None)
    assert rec["beyond_tolerance"] == 0 and rec["agreement_host_int8"] == 1.0 and rec["agreement_fp32"] is None


def _record(boards, lost=()):
    return {"boards": boards, "lost_shards": list(lost), "images": {"count": 100}}


def test_the_exit_code_says_disagreement_or_incompleteness():
    ok = {"name": "pi", "images": 100, "beyond_tolerance": 0, "reason": None}
    assert verdict(_record([ok])) is None
    bad = verdict(_record([ok, {**ok, "name": "pi2", "beyond_tolerance": 3}]))
    assert isinstance(bad, FleetDisagreement) and bad.exit_code == 13 and "pi2 on 3 of 100 images" in str(bad)
    lost = verdict(_record([ok], [{"shard": 4, "images": 20, "attempts": []}]))
    assert isinstance(lost, FleetIncomplete) and lost.exit_code == 14 and "20 of 100 images" in str(lost)
    none = verdict(_record([{"name": "pi", "reason": "device kind intel; the bundle is for rpi"}]))
    assert isinstance(none, FleetIncomplete) and "device kind intel" in str(none)
