"""Which operators of a .tflite compute differently on an emulated Raspberry Pi than on this host.

Every tensor an operator writes is made a model output (so XNNPACK must materialise it), the same int8
inputs run through LiteRT here and as arm64 code under qemu (bundle/emulate.py), and for each operator
the images where all its inputs are identical on both machines but its output is not are counted: those
are differences of the operator's own kernel, not inherited from upstream.

  python benchmarks/arm64_op_diff.py BUNDLE_DIR IMAGES_DIR [--count 100] [--board pi4] [--json out.json]

BUNDLE_DIR is a Raspberry Pi or Coral bundle (model.int8.tflite, preprocess.json, expected.json).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from edgeincep.bundle.emulate import BOARDS, run_emulated
from edgeincep.device.common import find_images, load_image, preprocess
from edgeincep.device.runner import quantize
from edgeincep.litert.graph import builtin_code
from edgeincep.litert.rewrite import load, pack

DUMP = '''
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1]); it.allocate_tensors()
inp, outs = it.get_input_details()[0], it.get_output_details()
x = np.load(sys.argv[2]); res = {d["name"]: [] for d in outs}
for i in range(len(x)):
    it.set_tensor(inp["index"], x[i:i + 1]); it.invoke()
    for d in outs:
        res[d["name"]].append(it.get_tensor(d["index"]).copy())
np.savez(sys.argv[3], **{k: np.concatenate(v) for k, v in res.items()})
'''


def every_tensor_an_output(flatbuffer: bytes) -> tuple[bytes, object]:
    model = load(flatbuffer)
    sub = model.subgraphs[0]
    outs = list(sub.outputs)
    outs += [t for op in sub.operators for t in op.outputs if t >= 0 and t not in outs]
    sub.outputs = outs
    return pack(model, len(flatbuffer)), model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("images")
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--board", choices=sorted(BOARDS), default="pi4")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter

    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    cfg = json.loads((args.bundle / "preprocess.json").read_text())
    exposed, model = every_tensor_an_output((args.bundle / "model.int8.tflite").read_bytes())
    sub = model.subgraphs[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "m.tflite").write_bytes(exposed)
        (tmp / "dump.py").write_text(DUMP)
        it = Interpreter(model_path=str(tmp / "m.tflite"))
        it.allocate_tensors()
        detail = it.get_input_details()[0]
        paths = find_images([args.images])
        paths = paths[:: max(1, len(paths) // args.count)][: args.count]
        x = np.stack([quantize(preprocess(load_image(p), cfg).transpose(1, 2, 0), detail) for p in paths])
        np.save(tmp / "x.npy", x)
        # One dump script for both machines: here with this interpreter, there under qemu.
        for done in (subprocess.run([sys.executable, "dump.py", "m.tflite", "x.npy", "host.npz"], cwd=tmp,
                                    capture_output=True, text=True),
                     run_emulated(BOARDS[args.board], ["dump.py", "m.tflite", "x.npy", "board.npz"], tmp)):
            if done.returncode != 0:
                print(done.stderr[-2000:], file=sys.stderr)
                return 1
        host, board = dict(np.load(tmp / "host.npz")), dict(np.load(tmp / "board.npz"))

    n = len(x)
    same = {k: np.all((host[k] == board[k]).reshape(n, -1), axis=1) for k in host}
    name = lambda i: sub.tensors[i].name.decode()  # noqa: E731
    is_const = lambda i: bool(sub.tensors[i].buffer and model.buffers[sub.tensors[i].buffer].data is not None  # noqa: E731
                              and len(model.buffers[sub.tensors[i].buffer].data))
    by_type: dict[str, dict] = defaultdict(lambda: {"ops": 0, "ops_differing": 0, "cases": 0, "max_steps": 0})
    differing = []
    for op in sub.operators:
        kind = op_names[builtin_code(model.operatorCodes[op.opcodeIndex])]
        inputs_same = np.ones(n, bool)
        for t in op.inputs:
            if t >= 0 and not is_const(t) and name(t) in same:
                inputs_same &= same[name(t)]
        out = name(op.outputs[0])
        own = inputs_same & ~same[out]
        steps = np.abs(host[out].astype(np.int32) - board[out].astype(np.int32)).reshape(n, -1)
        row = by_type[kind]
        row["ops"] += 1
        row["ops_differing"] += int(own.any())
        row["cases"] += int(own.sum())
        row["max_steps"] = max(row["max_steps"], int(steps[own].max()) if own.any() else 0)
        if own.any():
            differing.append({"op": kind, "output": out, "images": int(own.sum()),
                              "elements": int((steps[own] != 0).sum()), "max_steps": int(steps[own].max())})
    final = name(sub.outputs[0])
    final_steps = np.abs(host[final].astype(np.int32) - board[final].astype(np.int32)).reshape(n, -1).max(1)
    summary = {"bundle": str(args.bundle), "board": args.board, "images": n, "by_type": dict(by_type),
               "differing_ops": differing, "final_identical": int((final_steps == 0).sum()),
               "final_max_steps": int(final_steps.max())}
    print(f"{'operator':22s} {'ops':>5s} {'differ on equal inputs':>24s} {'(image, op) cases':>18s} {'max steps':>10s}")
    for kind, r in sorted(by_type.items()):
        print(f"{kind:22s} {r['ops']:5d} {r['ops_differing']:24d} {r['cases']:18d} {r['max_steps']:10d}")
    print(f"model output: identical on {summary['final_identical']}/{n} images, largest difference "
          f"{summary['final_max_steps']} output steps ({args.board} vs this host)")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
