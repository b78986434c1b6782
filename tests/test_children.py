"""Helper children die with their parent, also when the parent was killed before the child could ask for that."""
from __future__ import annotations

import os
import subprocess
import sys

from edgeincep.children import PARENT_PID, child_env

CHILD = "from edgeincep.children import die_with_parent; die_with_parent(); print('working')"


def test_a_child_whose_parent_is_alive_works():
    done = subprocess.run([sys.executable, "-c", CHILD], env=child_env(), capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "working\n")


def test_a_child_whose_parent_died_before_it_started_leaves_at_once():
    # The parent recorded in the environment is not this child's parent any more: it was killed while the
    # child's interpreter was starting (PR_SET_PDEATHSIG, set only now, would never fire).
    env = {**child_env(), PARENT_PID: str(os.getpid() + 1_000_000)}
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (137, "")
