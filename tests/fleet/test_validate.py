"""`edgeincep fleet validate` on two boards on loopback, each behind its own real OpenSSH server
(tests/sshd_server.py): an x86-64 machine running the Raspberry Pi bundle on this host's Python, and an emulated
Raspberry Pi 4 whose python3 is Debian's arm64 interpreter under qemu-user (bundle/emulate.board_python), so
the Pi bundle really runs ARM code there. The hard cases: a board whose server is killed mid-shard, a board
whose copy was tampered with, a board of the wrong kind; and the boards as resources of a Ray cluster.
"""
from __future__ import annotations

import json
import shutil
import sys
import threading
from pathlib import Path

import prerequisites
import pytest
from ray_cluster import ray_cluster
from sshd_server import start_sshd, stop_sshd
from user_cli import cli

from edgeincep.bundle import emulate
from edgeincep.deploy import ssh
from edgeincep.fleet.inventory import load_inventory
from edgeincep.fleet.validate import Fleet
from edgeincep.pipeline.bundle_stage import write_artifact_bundle
from edgeincep.recipes import Recipe

PER_CLASS = 12  # 120 images: six shards of 20


@pytest.fixture(scope="module")
def pi4_python(tmp_path_factory) -> Path:
    reason = emulate.unavailable_reason()
    if reason:
        prerequisites.missing(f"the emulated Pi cannot run: {reason}")
    return emulate.board_python(emulate.BOARDS["pi4"], tmp_path_factory.mktemp("pi4"))


@pytest.fixture(scope="module")
def rpi_bundle(tflite_int8, tmp_path_factory) -> Path:
    return write_artifact_bundle(tflite_int8, "rpi", {}, Recipe(), tmp_path_factory.mktemp("bundle")).folder


@pytest.fixture(scope="module")
def images(fmnist_val, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    for cls in sorted(p for p in fmnist_val.iterdir() if p.is_dir()):
        (root / cls.name).mkdir()
        for p in sorted(cls.glob("*.png"))[:PER_CLASS]:
            shutil.copy(p, root / cls.name / p.name)
    return root


@pytest.fixture
def boards(tmp_path, pi4_python):
    """Two boards, each its own sshd; yields (inventory path, {name: server process})."""
    servers = {name: start_sshd(tmp_path / name) for name in ("x86", "pi4")}
    (tmp_path / "known_hosts").write_text("".join(f"[127.0.0.1]:{s.port} {s.host_pub_line}\n"
                                                  for s, _ in servers.values()))
    python = {"x86": sys.executable, "pi4": str(pi4_python)}
    entries = "".join(f"  - {{name: {n}, host: {s.user}@127.0.0.1, port: {s.port}, identity: {s.identity}, "
                      f"device: rpi, python: '{python[n]}', dest: '{tmp_path / n / 'device'}'}}\n"
                      for n, (s, _) in servers.items())
    (tmp_path / "fleet.yaml").write_text(f"known_hosts: known_hosts\nboards:\n{entries}")
    try:
        yield tmp_path / "fleet.yaml", {n: proc for n, (_, proc) in servers.items()}
    finally:
        for _, proc in servers.values():
            stop_sshd(proc)


def by_name(record: dict) -> dict:
    return {b["name"]: b for b in record["boards"]}


def test_both_boards_classify_shares_of_the_set_and_agree_with_the_host_exactly(boards, rpi_bundle, images,
                                                                               reference_fp32, tmp_path):
    inventory, _ = boards
    done = cli("fleet", "validate", rpi_bundle, "--hosts", inventory, "--images", images, "--shard-size", 20,
               "--fp32", reference_fp32, "--json", tmp_path / "fleet.json", "--html", tmp_path / "fleet.html",
               timeout=900)
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "fleet.json").read_text())
    b = by_name(record)
    assert record["images"]["classified"] == record["images"]["count"] == 10 * PER_CLASS
    assert b["x86"]["images"] + b["pi4"]["images"] == 10 * PER_CLASS and b["pi4"]["images"] > 0
    assert b["x86"]["images"] > b["pi4"]["images"]  # the fast board took more: work stealing
    assert b["pi4"]["versions"]["machine"] == "aarch64" and b["x86"]["versions"]["machine"] == "x86_64"
    for entry in (b["x86"], b["pi4"], record["merged"]):
        assert entry["agreement_host_int8"] == 1.0 and entry["identical_logits"] == 1.0
        assert entry["beyond_tolerance"] == 0 and entry["disagreement_list"] == []
        assert entry["top1"] > 0.8 and entry["agreement_fp32"] > 0.95
    assert b["pi4"]["images_per_s"] > 0 and b["pi4"]["overhead_per_shard_s"] >= 0
    assert "Where a board disagrees" in (tmp_path / "fleet.html").read_text()
    assert "all boards" in done.stdout


def test_a_board_killed_mid_shard_has_its_shard_moved_and_no_image_is_lost_or_counted_twice(
        boards, rpi_bundle, images):
    inventory, servers = boards
    killed = []

    def on_event(kind: str, board: str, details: dict) -> None:
        if kind == "shard-start" and board == "pi4" and not killed:
            killed.append(details["shard"])
            # While the board is running the shard: the server, its sessions and run.py all die at once.
            threading.Timer(1.0, stop_sshd, (servers["pi4"],), {"hard": True}).start()

    record = Fleet(rpi_bundle, load_inventory(inventory), on_event=on_event).run(images, shard_size=20)
    b = by_name(record)
    assert killed and b["pi4"]["state"] == "dropped" and f"shard {killed[0]}" in b["pi4"]["reason"]
    assert record["images"]["classified"] == 10 * PER_CLASS and record["lost_shards"] == []
    assert b["x86"]["images"] + b["pi4"].get("images", 0) == 10 * PER_CLASS
    assert record["merged"]["agreement_host_int8"] == 1.0


def test_a_tampered_board_and_a_board_of_another_kind_are_excluded_with_the_reason(boards, rpi_bundle, images,
                                                                                   tmp_path):
    inventory, _ = boards
    inv = load_inventory(inventory)
    for board in inv.boards:
        ssh.deploy(rpi_bundle, ssh.parse_target(board.host, board.port), dest=board.dest, identity=board.identity,
                   known_hosts=ssh.KnownHosts(inv.known_hosts), remote_python=board.python)
    labels = tmp_path / "pi4" / "device" / rpi_bundle.name / "current" / "labels.json"
    labels.write_text(labels.read_text().replace("bag", "bog"))
    intel = inv.boards[0].model_copy(update={"name": "nuc", "device": "intel"})
    inv = inv.model_copy(update={"boards": [*inv.boards, intel]})
    record = Fleet(rpi_bundle, inv, deploy=False).run(images, shard_size=40)
    b = by_name(record)
    assert b["pi4"]["state"] == "excluded" and "labels.json: content differs from the manifest" in b["pi4"]["reason"]
    assert b["nuc"]["state"] == "excluded" and b["nuc"]["reason"] == "device kind intel; the bundle is for rpi"
    assert b["x86"]["images"] == record["images"]["classified"] == 10 * PER_CLASS


def test_on_a_ray_cluster_each_board_loop_runs_on_a_node_offering_its_board_resource(boards, rpi_bundle, images,
                                                                                      tmp_path):
    inventory, _ = boards
    nodes = [{"cpus": 1, "resources": {"board:rpi": 1}}, {"cpus": 1, "resources": {"board:rpi": 1}}]
    with ray_cluster(tmp_path / "ray", nodes) as address:
        record = Fleet(rpi_bundle, load_inventory(inventory), ray_address=address).run(images, shard_size=20)
    b = by_name(record)
    assert b["x86"]["ray_node"] and b["pi4"]["ray_node"] and b["x86"]["ray_node"] != b["pi4"]["ray_node"]
    assert b["x86"]["images"] + b["pi4"]["images"] == record["images"]["classified"] == 10 * PER_CLASS
    assert record["merged"]["agreement_host_int8"] == 1.0 and record["lost_shards"] == []
