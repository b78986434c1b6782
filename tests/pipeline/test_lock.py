"""The output-directory lock: a live holder blocks a second run; a killed one never leaves it stuck."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from edgeincep.core.errors import OutputError
from edgeincep.pipeline.lock import LOCK_NAME, output_lock

HOLD = ("import sys, time; from pathlib import Path; from edgeincep.pipeline.lock import output_lock\n"
        "with output_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)\n")


def _holder(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_holder_in_another_process_is_named(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(OutputError, match=rf"pid {proc.pid} on .* since "), output_lock(tmp_path):
            pass
    finally:
        proc.kill()
        proc.wait()


def test_a_holder_killed_with_sigkill_leaves_no_stale_lock(tmp_path):
    proc = _holder(tmp_path)
    proc.kill()  # SIGKILL: no cleanup code runs in the holder
    proc.wait()
    assert (tmp_path / LOCK_NAME).exists()
    t0 = time.perf_counter()
    with output_lock(tmp_path):
        pass
    assert time.perf_counter() - t0 < 1
