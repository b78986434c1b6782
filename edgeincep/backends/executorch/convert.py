"""PyTorch to ExecuTorch: the network rebuilt from the verified FP32 ONNX, PT2E INT8, XNNPACK lowering.

The one backend that skips ONNX as a format still starts from the FP32 ONNX as its source of truth: the
export stage folded BatchNorm and verified the file against PyTorch, and its initializers carry the folded
module's state dict under the module's own names. Rebuilding the network from them (and checking it
reproduces ONNX Runtime) means ExecuTorch quantizes exactly the weights every other backend quantized,
from the PyTorch graph and module names the paper's figures use.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeincep.core.errors import UserError
from edgeincep.export.metadata import read_metadata

if TYPE_CHECKING:
    import torch
    from torch import nn

def module_from_onnx(fp32: Path, check_images: np.ndarray) -> nn.Module:
    """The BN-folded network whose weights are the ONNX file's, checked against ONNX Runtime."""
    import onnx
    import torch
    from onnx import numpy_helper

    from edgeincep.export.fold import fold_batchnorm
    from edgeincep.models.registry import create_model, get_spec
    from edgeincep.validate.ort import OrtPredictor

    meta = read_metadata(fp32)
    try:
        name, width = meta["edgeincep.model"], float(meta["edgeincep.width"])
        classes = int(meta["edgeincep.num_classes"])
    except (KeyError, ValueError):
        raise UserError("the FP32 ONNX has no edgeincep model metadata (export it with edgeincep)", fp32) from None
    model = fold_batchnorm(create_model(name, num_classes=classes, width=width))
    inits = {i.name: i for i in onnx.load(str(fp32)).graph.initializer}
    state = model.state_dict()
    missing = [k for k, v in state.items() if v.is_floating_point() and k not in inits]
    if missing:
        raise UserError(f"the FP32 ONNX lacks {len(missing)} weights of {name} (e.g. {missing[0]}); "
                        "it was not exported by this edgeincep", fp32)
    loaded = {}
    for k, v in state.items():
        if k in inits:
            w = torch.from_numpy(numpy_helper.to_array(inits[k]).copy())
            if w.shape != v.shape:
                raise UserError(f"weight {k} is {tuple(w.shape)} in the ONNX, {tuple(v.shape)} in {name}", fp32)
            loaded[k] = w
    model.load_state_dict(loaded, strict=False)
    model.eval()
    with torch.inference_mode():
        got = model(torch.from_numpy(check_images)).numpy()
    want = OrtPredictor(fp32).predict(check_images)
    diff = float(np.abs(got - want).max())
    # The export's own bar (float32 reassociation between two runtimes); a wrong weight is far beyond it.
    if not diff <= get_spec(name).export_rtol * float(want.std()) + 1e-5:
        raise UserError(f"{name} rebuilt from the ONNX weights differs from ONNX Runtime by {diff:.3g}", fp32)
    return model


def _in_any(node, modules: frozenset[str]) -> bool:
    """Whether an FX node was traced inside one of these module paths."""
    for path, _type in (node.meta.get("nn_module_stack") or {}).values():
        if path in modules or any(path.startswith(m + ".") for m in modules):
            return True
    return False


def quantize(model: nn.Module, example: torch.Tensor, calib: np.ndarray, *, per_channel: bool, batch: int,
             float_modules: Sequence[str] = ()) -> torch.fx.GraphModule:
    """PT2E post-training static INT8 with the XNNPACK quantizer (symmetric INT8 weights, INT8 activations
    observed by its histogram observers); modules named in `float_modules` stay float."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    keep = frozenset(float_modules)
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))
    if keep:
        quantizer.set_filter_function(lambda node: not _in_any(node, keep))
    dim = torch.export.Dim("batch", min=1, max=max(2, batch))
    graph = torch.export.export(model, (example.repeat(2, 1, 1, 1),), dynamic_shapes=({0: dim},)).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.inference_mode():
        for i in range(0, len(calib), batch):
            prepared(torch.from_numpy(calib[i:i + batch]))
    return convert_pt2e(prepared)


def lower(model: nn.Module, example: torch.Tensor) -> tuple[bytes, dict]:
    """The .pte bytes of `model` (a batch-1 static graph) with every op XNNPACK takes delegated to it, and
    how many ops it took and left."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower

    program = torch.export.export(model, (example,))
    # Each lowering pass deep-copies every node's provenance chain (debugging metadata the .pte does not carry);
    # the chain the quantizer built makes that copying a large share of the cost of lowering these graphs.
    for node in program.graph.nodes:
        node.meta.pop("from_node", None)
    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    info = get_delegation_info(edge.exported_program().graph_module)
    delegation = {"delegated_ops": int(info.num_delegated_nodes), "cpu_ops": int(info.num_non_delegated_nodes),
                  "delegates": int(info.num_delegated_subgraphs)}
    return edge.to_executorch().buffer, delegation


def output_quantization(converted) -> dict | None:
    """Scale and zero point of the INT8 code behind each output logit (the dequantize feeding the graph's
    output); None when the output is not quantized."""
    import torch

    out = next(n for n in converted.graph.nodes if n.op == "output")
    node = out.args[0][0] if isinstance(out.args[0], (tuple, list)) else out.args[0]
    if getattr(node, "target", None) != torch.ops.quantized_decomposed.dequantize_per_tensor.default:
        return None
    return {"scale": float(node.args[1]), "zero_point": int(node.args[2])}
