"""The fleet inventory: the boards a bundle is validated on, read from YAML and checked before anything connects.

    known_hosts: ~/.ssh/known_hosts      # optional; host keys are checked as `edgeincep deploy` checks them
    boards:
      - name: pi-kitchen
        host: pi@10.0.0.5                 # user@host (or host: your user name)
        port: 22
        identity: ~/.ssh/id_ed25519       # optional: ssh-agent, then ~/.ssh/id_*
        device: rpi                       # the bundle kind it runs: rpi, coral, intel, jetson
        python: python3                   # the board's Python (deploy --remote-python)
        dest: ~/edgeincep
        labels: {room: kitchen}

Relative paths are relative to the inventory file.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, field_validator

from edgeincep.core.errors import UserError
from edgeincep.core.settings import Strict
from edgeincep.yamlfile import load_mapping


class Board(Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    host: str = Field(min_length=1)
    port: int = Field(22, ge=1, le=65535)
    identity: Path | None = None
    device: str = Field(min_length=1)
    python: str = "python3"
    dest: str = "~/edgeincep"
    labels: dict[str, str] = Field(default_factory=dict)


class Inventory(Strict):
    known_hosts: Path | None = None
    boards: list[Board] = Field(min_length=1)

    @field_validator("boards")
    @classmethod
    def _unique(cls, boards: list[Board]) -> list[Board]:
        seen: set[str] = set()
        for b in boards:
            if b.name in seen:
                raise ValueError(f"board name {b.name!r} appears twice")
            seen.add(b.name)
        return boards


def load_inventory(path: Path) -> Inventory:
    """The inventory at `path`; any problem is one UserError naming the file and the key."""
    path = Path(path)
    data = load_mapping(path, "inventory", "a mapping with a 'boards' list")
    try:
        inv = Inventory.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise UserError(f"{where}: {first['msg']}", path) from None
    base = path.resolve().parent

    def resolve(p: Path | None) -> Path | None:
        return None if p is None else (base / p.expanduser()).resolve()

    return inv.model_copy(update={
        "known_hosts": resolve(inv.known_hosts),
        "boards": [b.model_copy(update={"identity": resolve(b.identity)}) for b in inv.boards]})
