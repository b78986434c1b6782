"""Small YAML files a user writes (recipes, fleet inventories), read defensively: safe_load semantics, a key
given twice refused (YAML keeps the last silently, losing the first block), a fixed nesting limit, a size cap,
and every problem one UserError naming the file."""
from __future__ import annotations

from pathlib import Path

import yaml

from edgeincep.core.errors import UserError

MAX_DEPTH = 64  # recipes and inventories are 2-4 levels deep
MAX_BYTES = 1_000_000


def one_line(text) -> str:
    return " ".join(str(text).split())


class _Loader(yaml.SafeLoader):
    """safe_load that refuses a key given twice and nesting deeper than MAX_DEPTH."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})",
                    key_node.start_mark)
            if isinstance(key, str):
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)

    def compose_node(self, parent, index):
        # A fixed depth limit: PyYAML recurses per level, and other libraries in this process (onnx2tf)
        # raise the interpreter's recursion limit, so a RecursionError alone would depend on who ran first.
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise RecursionError
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_mapping(path: Path, what: str, shape: str) -> dict:
    """The mapping in the YAML file `path` ({} when empty); `what` names the file in errors ("recipe"),
    `shape` says what it must be ("a mapping of settings")."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BYTES:  # a few hundred bytes in practice: refuse a hostile giant before parsing
            raise UserError(f"{what} is larger than 1 MB; is this the right file?", path)
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # a SafeLoader: no Python tags
    except FileNotFoundError:
        raise UserError(f"{what} file not found", path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {what} ({type(e).__name__})", path) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"{what} is not valid YAML{where}: {one_line(getattr(e, 'problem', None) or e)}", path) from None
    except (ValueError, TypeError, AttributeError, OverflowError, IndexError, KeyError) as e:
        # PyYAML's scalar constructors raise these for malformed tagged or implicit values (2001-13-45, !!int 0x).
        raise UserError(f"{what} is not valid YAML: a malformed value ({one_line(e)[:150]})", path) from None
    except RecursionError:
        raise UserError(f"{what} is not valid YAML: nested too deeply", path) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{what} must be {shape}, got {type(data).__name__}", path)
    return data
