"""`edgeincep sweep` for real: the reference Inception-ResNet-v1 at 75 px on ONNX Runtime, a small grid over a
few hundred validation images; in this process, on a local Ray runtime, and on a real two-node Ray cluster on
loopback (`ray start --head` on 127.0.0.1 plus a second `ray start --address`, one CPU each), where one worker is
SIGKILLed in the middle of its trial."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from ray_cluster import ray_cluster as ray_cluster_at
from user_cli import cli

from edgeincep.recipes import load_recipe_file
from edgeincep.sweep.run import sweep
from edgeincep.sweep.space import Space

MODEL, TARGET, LIMIT = "inception_resnet_v1", "onnxruntime", 200
GRID = {"calibration.count": [50, 100]}
MEASURES = ("top1", "top1_agreement", "sqnr_db", "size_bytes", "images")


def space(grid: dict | None = None) -> Space:
    return Space.model_validate({"grid": grid or GRID})


def measures(record: dict) -> dict:
    return {r["id"]: {k: r[k] for k in MEASURES} for r in record["trials"]}


@pytest.fixture(scope="module")
def in_process(fmnist_val, tmp_path_factory) -> dict:
    """The grid run without Ray: what every Ray run must reproduce."""
    out = tmp_path_factory.mktemp("no-ray")
    return sweep([MODEL], [TARGET], space(), weights="reference", val_dir=fmnist_val, out_dir=out, limit=LIMIT,
                 use_ray=False)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """Two Ray nodes on loopback, one CPU each."""
    with ray_cluster_at(tmp_path_factory.mktemp("ray"), [{"cpus": 1}, {"cpus": 1, "resources": {"second_node": 1}}]) as a:
        yield a


def test_trials_are_recorded_with_a_front_and_a_winning_recipe_that_run_takes(in_process, tmp_path):
    rec = in_process
    assert rec["counts"] == {"trials": 2, "ok": 2, "failed": 0, "resumed": 0}
    for r in rec["trials"]:
        assert r["status"] == "ok" and r["images"] == LIMIT and 0.9 < r["top1_agreement"] <= 1.0
        assert r["latency_ratio"] > 0 and Path(r["artifact"]).is_file()
    key = f"{MODEL}.{TARGET}"
    assert rec["fronts"][key] and set(rec["fronts"][key]) <= {r["id"] for r in rec["trials"]}
    best = load_recipe_file(rec["winners"][key]["recipe_file"])  # what `edgeincep run --recipe` loads
    winner = next(r for r in rec["trials"] if r["id"] == rec["winners"][key]["id"])
    assert best.calibration.count == winner["variant"]["calibration.count"] and best.target == TARGET


def test_a_bad_value_is_a_failed_trial_with_its_reason_and_a_rerun_resumes_from_the_store(fmnist_val, in_process,
                                                                                         tmp_path):
    # the artifact lies in its trial's folder, or deeper where the ladder climbed: the store holds `trials/`
    store = next(p for p in Path(in_process["trials"][0]["artifact"]).parents if p.name == "trials").parent
    grid = {"calibration.count": [50, -5]}
    first = sweep([MODEL], [TARGET], space(grid), weights="reference", val_dir=fmnist_val, out_dir=tmp_path,
                  limit=LIMIT, store=store, use_ray=False)
    ok, bad = first["trials"]
    assert ok["resumed"] and ok["id"] == in_process["trials"][0]["id"]  # finished by the earlier sweep
    assert bad["status"] == "failed" and bad["error"] == (
        "recipe key 'calibration.count': Input should be greater than or equal to 1")
    again = sweep([MODEL], [TARGET], space(grid), weights="reference", val_dir=fmnist_val, out_dir=tmp_path,
                  limit=LIMIT, store=store, use_ray=False)
    assert again["counts"]["resumed"] == 2 and again["trial_seconds"] == 0


def test_the_cli_on_a_local_ray_runtime_gives_the_in_process_numbers(in_process, fmnist_val, tmp_path):
    (tmp_path / "grid.yaml").write_text(json.dumps({"grid": GRID}))
    done = cli("sweep", "--model", MODEL, "--target", TARGET, "--grid", tmp_path / "grid.yaml", "--val", fmnist_val,
               "--limit", LIMIT, "--out", tmp_path / "out", timeout=900)
    assert done.returncode == 0, done.stderr
    rec = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert rec["cluster"]["address"] == "local" and rec["cluster"]["nodes"] == 1
    assert measures(rec) == measures(in_process)
    assert "Pareto front" in (tmp_path / "out" / "sweep.html").read_text()
    assert "★" in (tmp_path / "out" / "sweep.md").read_text()


def test_a_two_node_cluster_gives_the_same_trials_and_a_worker_killed_mid_trial_is_retried(
        ray_cluster, in_process, fmnist_val, tmp_path):
    store = tmp_path / "store"
    killed: list[int] = []

    def kill_first_worker() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            for started in sorted(store.glob("trials/*/started.json")):
                pid = json.loads(started.read_text().splitlines()[0])["pid"]
                time.sleep(1.0)  # well inside the trial: calibration and quantization take several seconds
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_first_worker, daemon=True)
    killer.start()
    rec = sweep([MODEL], [TARGET], space(), weights="reference", val_dir=fmnist_val, out_dir=tmp_path / "out",
                limit=LIMIT, store=store, address=ray_cluster)
    killer.join(5)
    assert killed and rec["cluster"]["nodes"] == 2 and rec["cluster"]["resources"]["CPU"] == 2
    assert [r["status"] for r in rec["trials"]] == ["ok", "ok"]
    assert len({r["id"] for r in rec["trials"]}) == 2  # each trial exactly once
    assert max(r["attempts"] for r in rec["trials"]) == 2 and killed[0] not in {r["pid"] for r in rec["trials"]}
    assert measures(rec) == measures(in_process)
