"""Each pipeline stage reports its own wall time and its own memory peak, not the process's."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from edgeincep.meter import StageMeter

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-stage peaks need Linux /proc")


def test_a_stage_that_allocates_shows_it_and_the_next_stage_starts_from_a_reset_peak():
    meter = StageMeter()
    with meter.stage("big"):
        block = np.ones(300 * 2**20 // 8)  # 300 MB, touched
        del block
    with meter.stage("small"):
        sum(range(1000))
    big, small = meter.stages["big"], meter.stages["small"]
    assert big["peak_rss_mb"] - big["start_rss_mb"] > 250
    assert small["peak_is"] == "this stage"
    assert small["peak_rss_mb"] - small["start_rss_mb"] < 50
    assert meter.seconds() == {"big": big["seconds"], "small": small["seconds"]}


def test_a_failing_stage_is_still_measured():
    meter = StageMeter()
    with pytest.raises(ValueError), meter.stage("broken"):
        raise ValueError("boom")
    assert meter.stages["broken"]["seconds"] >= 0


def test_memory_held_by_child_processes_counts_towards_the_stage():
    """ModelOpt and the TFLite calibration workers run in children: the machine needs their memory too."""
    import subprocess

    meter = StageMeter()
    with meter.stage("child"):
        subprocess.run([sys.executable, "-c", "import numpy, time; b = numpy.ones(400 * 2**20 // 8); time.sleep(0.6)"],
                       check=True)
    st = meter.stages["child"]
    assert st["children_peak_rss_mb"] > 350
    assert st["peak_rss_mb"] >= st["own_peak_rss_mb"] + 300
