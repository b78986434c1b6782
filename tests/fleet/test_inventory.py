"""The fleet inventory: typed, checked before anything connects, each problem one line naming the file."""
from __future__ import annotations

from pathlib import Path

import pytest
from user_cli import cli, one_error_line

from edgeincep.core.errors import UserError
from edgeincep.fleet.inventory import load_inventory

GOOD = """known_hosts: keys/known_hosts
boards:
  - name: pi-1
    host: pi@10.0.0.5
    identity: keys/id_ed25519
    device: rpi
    labels: {room: lab}
  - {name: nuc, host: 10.0.0.9, port: 2222, device: intel, python: /opt/env/bin/python}
"""


def test_paths_are_relative_to_the_inventory_and_defaults_filled_in(tmp_path):
    (tmp_path / "fleet.yaml").write_text(GOOD)
    inv = load_inventory(tmp_path / "fleet.yaml")
    assert inv.known_hosts == tmp_path / "keys" / "known_hosts"
    pi, nuc = inv.boards
    assert pi.identity == tmp_path / "keys" / "id_ed25519" and pi.port == 22 and pi.python == "python3"
    assert nuc.identity is None and nuc.port == 2222 and nuc.labels == {}


@pytest.mark.parametrize(("text", "message"), [
    ("boards: [", "not valid YAML at line 1, column 10"),
    ("- just a list\n", "must be a mapping with a 'boards' list, got list"),
    ("boards: []\n", "boards: List should have at least 1 item"),
    ("boards:\n  - {name: a, host: h, device: rpi}\n  - {name: a, host: g, device: rpi}\n", "appears twice"),
    ("boards:\n  - {name: a, host: h, device: rpi, colour: red}\n", "boards.0.colour: Extra inputs"),
    ("boards:\n  - {name: a, host: h, device: rpi, port: 70000}\n", "boards.0.port:"),
])
def test_a_bad_inventory_is_one_error_naming_the_file_and_key(tmp_path, text, message):
    (tmp_path / "fleet.yaml").write_text(text)
    with pytest.raises(UserError, match=message) as e:
        load_inventory(tmp_path / "fleet.yaml")
    assert str(e.value).startswith(str(tmp_path / "fleet.yaml")) and "\n" not in str(e.value)


def test_the_cli_refuses_a_missing_inventory_before_touching_the_bundle(tmp_path):
    done = cli("fleet", "validate", tmp_path / "no-bundle", "--hosts", tmp_path / "nope.yaml", "--images", tmp_path)
    assert done.returncode == 2
    assert one_error_line(done) == f"error: {Path(tmp_path / 'nope.yaml')}: inventory file not found"
