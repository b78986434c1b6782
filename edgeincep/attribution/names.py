"""From ONNX node names back to the PyTorch module that made them.

torch.onnx names each node by the module scopes it was traced in, one path component per module:
"/repeat_1/repeat_1.3/branch1/branch1.0/conv/Conv" is the Conv of module repeat_1.3.branch1.0.conv.
A child of a Sequential or ModuleList appears as "<parent>.<index>" (repeat_1.3 under repeat_1), a named
child by its own name (branch1 under repeat_1.3); the last component is the operator.
"""
from __future__ import annotations


def module_path(node_name: str) -> str | None:
    """The module's dotted path for a node name of a torch.onnx export; None for a node outside any module."""
    parts = [p for p in node_name.split("/") if p]
    if len(parts) < 2:
        return None
    path: list[str] = []
    prev = ""
    for part in parts[:-1]:
        if prev and part.startswith(prev + "."):
            path.append(part[len(prev) + 1:])
        else:
            path.append(part)
        prev = part
    return ".".join(path)
