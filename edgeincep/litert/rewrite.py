"""Edits of TFLite flatbuffers that change how a model is stored or run, not what it computes.

`pools_as_depthwise`: LiteRT's XNNPACK delegate has no int8 average pool. On Inception-v4 (14
pool branches) every int8 AVERAGE_POOL_2D ran in TFLite's reference kernel and cut XNNPACK's graph
into 16 partitions: INT8 took 0.55x of FP32's time where Inception-ResNet-v2 (one pool) took 0.30x.
A stride-1 average over SAME-padded k x k windows that counts only the valid pixels (PyTorch's
count_include_pad=False, TensorFlow's SAME pooling) is a depthwise convolution with every weight
1/(k*k), followed by a multiplication by k*k / (valid pixels in the window): 1 inside, 1.5 on the
borders, 2.25 in the corners of a 3x3 pool. XNNPACK runs both in int8.

The edit is made on the calibrated float model, between TensorFlow's calibrator and its
quantizer, so the TFLite and Edge TPU models (whose compiler maps AVERAGE_POOL_2D itself) share one
calibration. The one new activation tensor, the window sums before the border correction, gets
the range [min(lo, 0), max(hi, 0)] of the pool's calibrated output [lo, hi]: each window sum is the
pool's value times a factor in (0, 1], so that range holds every value it can take.

`unfuse_pool_relu`: see its docstring (Coral's compiler refuses pools with a fused activation).
`float16_weights`: the FP16 file from the FP32 one, as the converter would write it.
"""
from __future__ import annotations

import copy

import numpy as np

# Part of every INT8 build's cache key: bump it when an edit here changes the bytes an INT8 model gets, so
# that a model built by earlier code is rebuilt, not reused (2: exact border factors).
INT8_EDITS_VERSION = 2


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def load(flatbuffer: bytes):
    """A flatbuffer this process made, unpacked into LiteRT's object API for editing (see `pack`).
    (Files from users are read by litert.graph, which checks them first.)"""
    return _schema().ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)


def pack(model, size_hint: int) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(size_hint + (1 << 20))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _name(tensor) -> str:
    return tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)


def opcode(model, builtin: int) -> int:
    """Index of `builtin` in the model's operator codes, added (version 1) if absent."""
    from edgeincep.litert.graph import builtin_code

    schema = _schema()
    for i, oc in enumerate(model.operatorCodes):
        if builtin_code(oc) == builtin:
            return i
    oc = schema.OperatorCodeT()
    oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = builtin, min(builtin, 127), 1
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _drop_unused_opcodes(model) -> None:
    # TensorFlow's calibrator builds its op resolver from the operators in use but its interpreter
    # registers every operator code: a code left without operators fails to load there.
    used = sorted({op.opcodeIndex for sub in model.subgraphs for op in sub.operators})
    remap = {old: new for new, old in enumerate(used)}
    model.operatorCodes = [model.operatorCodes[i] for i in used]
    for sub in model.subgraphs:
        for op in sub.operators:
            op.opcodeIndex = remap[op.opcodeIndex]


def _constant(model, sub, name: str, values: np.ndarray) -> int:
    schema = _schema()
    buf = schema.BufferT()
    buf.data = np.frombuffer(np.ascontiguousarray(values, dtype=np.float32).tobytes(), dtype=np.uint8)
    model.buffers.append(buf)
    t = schema.TensorT()
    t.shape, t.type, t.buffer, t.name = list(values.shape), schema.TensorType.FLOAT32, len(model.buffers) - 1, name
    sub.tensors.append(t)
    return len(sub.tensors) - 1


def valid_counts(size: int, k: int) -> np.ndarray:
    """Pixels of each stride-1 SAME window of width k that fall inside an axis of `size` pixels."""
    before = (k - 1) // 2  # TensorFlow's SAME padding puts the odd pixel after
    i = np.arange(size)
    return (np.minimum(size - 1, i - before + k - 1) - np.maximum(0, i - before) + 1).astype(np.float64)


def border_factors(height: int, width: int, kh: int, kw: int) -> np.ndarray:
    """k*k / (valid pixels) at every output position: what turns a zero-padded window mean into
    the mean over the valid pixels only."""
    return (kh * kw) / np.outer(valid_counts(height, kh), valid_counts(width, kw))


def _is_same_stride1_float_pool(sub, op, schema) -> bool:
    o = op.builtinOptions
    return (o.strideH == 1 and o.strideW == 1 and o.padding == schema.Padding.SAME
            and sub.tensors[op.inputs[0]].type == schema.TensorType.FLOAT32)


def pools_as_depthwise(flatbuffer: bytes) -> tuple[bytes, int]:
    """The float (or calibrated float) model with every stride-1 SAME AVERAGE_POOL_2D replaced by
    DEPTHWISE_CONV_2D (weights 1/(k*k)) and a MUL by the border factors; and how many were replaced.

    The MUL writes the pool's old output tensor and carries its fused activation, so everything
    after it, calibration ranges included, is unchanged."""
    from edgeincep.litert.graph import builtin_code

    schema = _schema()
    model = load(flatbuffer)
    pools = {i for i, oc in enumerate(model.operatorCodes)
             if builtin_code(oc) == schema.BuiltinOperator.AVERAGE_POOL_2D}
    replaced = 0
    for sub in model.subgraphs:
        ops = []
        for op in sub.operators:
            if op.opcodeIndex not in pools or not _is_same_stride1_float_pool(sub, op, schema):
                ops.append(op)
                continue
            ops += _depthwise_and_mul(model, sub, op, f"{_name(sub.tensors[op.inputs[0]])}/avg_pool_{replaced}")
            replaced += 1
        sub.operators = ops
    if not replaced:
        return flatbuffer, 0
    _drop_unused_opcodes(model)
    return pack(model, len(flatbuffer)), replaced


def _depthwise_and_mul(model, sub, pool, base: str) -> list:
    schema = _schema()
    opts = pool.builtinOptions
    kh, kw = opts.filterHeight, opts.filterWidth
    _, height, width, channels = sub.tensors[pool.inputs[0]].shape
    out = sub.tensors[pool.outputs[0]]

    weights = _constant(model, sub, base + "/weights", np.full((1, kh, kw, channels), 1.0 / (kh * kw)))
    bias = _constant(model, sub, base + "/bias", np.zeros((channels,)))
    factors = _constant(model, sub, base + "/border_factors",
                        border_factors(height, width, kh, kw).reshape(1, height, width, 1))
    sums = schema.TensorT()
    sums.shape, sums.type, sums.name = list(out.shape), schema.TensorType.FLOAT32, base + "/window_sums"
    if out.quantization is not None and out.quantization.min is not None and len(out.quantization.min):
        q = schema.QuantizationParametersT()
        q.min = [min(float(np.min(out.quantization.min)), 0.0)]
        q.max = [max(float(np.max(out.quantization.max)), 0.0)]
        sums.quantization = q
    sub.tensors.append(sums)
    sums_index = len(sub.tensors) - 1

    dw = schema.OperatorT()
    dw.opcodeIndex = opcode(model, schema.BuiltinOperator.DEPTHWISE_CONV_2D)
    dw.inputs, dw.outputs = [pool.inputs[0], weights, bias], [sums_index]
    d = schema.DepthwiseConv2DOptionsT()
    d.padding, d.strideH, d.strideW, d.depthMultiplier = schema.Padding.SAME, 1, 1, 1
    d.dilationHFactor, d.dilationWFactor = 1, 1
    d.fusedActivationFunction = schema.ActivationFunctionType.NONE
    dw.builtinOptionsType, dw.builtinOptions = schema.BuiltinOptions.DepthwiseConv2DOptions, d

    mul = schema.OperatorT()
    mul.opcodeIndex = opcode(model, schema.BuiltinOperator.MUL)
    mul.inputs, mul.outputs = [sums_index, factors], [pool.outputs[0]]
    m = schema.MulOptionsT()
    m.fusedActivationFunction = opts.fusedActivationFunction
    mul.builtinOptionsType, mul.builtinOptions = schema.BuiltinOptions.MulOptions, m
    return [dw, mul]


def exact_border_factors(int8_flatbuffer: bytes) -> bytes:
    """The full-integer model with each border MUL of `pools_as_depthwise` given a constant whose int8
    values are the exact border factors, times (1 - eps).

    TensorFlow's quantizer stores the factors [1, 1.5, 2.25] over [0, 2.25] with 255 steps, so they
    become 0.99706, 1.5000001 and 2.2500001; with the window sums and the pool sharing one scale,
    half the products then land within 1e-6 of a rounding tie (n x 1.5 for odd n). XNNPACK rounds
    this MUL in float32 on x86 and in 32-bit fixed point on ARM, so the two disagreed on such ties
    and the model's logits differed by up to 5 output steps between a PC and a Raspberry Pi, while
    every other operator agreed bit for bit.

    Here the factors are q / D exactly (3x3: 56, 84, 126 over 56) and the constant's scale is
    (1 - eps) / D, with eps (at most 2^-10) chosen so that every product the MUL can form, for
    every int8 input, lies at least 1e-5 x max(1, |value|) away from a rounding boundary: any kernel
    that computes the multiplier to that precision rounds every product the same way. Interior
    values pass through unchanged (n x (1 - eps) rounds to n) instead of being scaled by 0.997.
    A MUL for which no eps keeps that distance keeps the quantizer's constant."""
    from edgeincep.litert.graph import builtin_code

    schema = _schema()
    model = load(int8_flatbuffer)
    changed = 0
    for sub in model.subgraphs:
        producer = {op.outputs[0]: op for op in sub.operators}
        for op in sub.operators:
            if builtin_code(model.operatorCodes[op.opcodeIndex]) != schema.BuiltinOperator.MUL:
                continue
            sums, out = sub.tensors[op.inputs[0]], sub.tensors[op.outputs[0]]
            if not _name(sums).endswith("/window_sums") or sums.type != schema.TensorType.INT8:
                continue
            _, kh, kw, _ = sub.tensors[producer[op.inputs[0]].inputs[1]].shape
            _, height, width, _ = sums.shape
            exact = _exact_factors(height, width, kh, kw)
            if exact is None:
                continue
            q, denominator = exact
            zero_sums = int(sums.quantization.zeroPoint[0])
            ratio = float(sums.quantization.scale[0]) / float(out.quantization.scale[0])
            eps, margin = _tie_free_eps(np.unique(q), denominator, ratio, zero_sums)
            if margin <= 1.0:
                continue
            changed += 1
            shared = sum(op.inputs[1] in other.inputs for other in sub.operators) > 1
            if shared:
                sub.tensors.append(copy.deepcopy(sub.tensors[op.inputs[1]]))
                op.inputs[1] = len(sub.tensors) - 1
            _set_int8_constant(model, sub, op.inputs[1], q.reshape(1, height, width, 1),
                               _float32((1.0 - eps) / denominator))
    return pack(model, len(int8_flatbuffer)) if changed else int8_flatbuffer


def _exact_factors(height: int, width: int, kh: int, kw: int) -> tuple[np.ndarray, int] | None:
    """The border factors as int8 numerators over one denominator (None if they do not fit in int8)."""
    import math
    from fractions import Fraction

    counts = np.outer(valid_counts(height, kh), valid_counts(width, kw)).astype(np.int64)
    fractions = [Fraction(kh * kw, int(c)) for c in np.unique(counts)]
    base = math.lcm(*(f.denominator for f in fractions))
    scale_up = 127 // int(max(fractions) * base)
    if scale_up == 0:
        return None
    denominator = base * scale_up
    return (kh * kw * denominator // counts).astype(np.int8), denominator


def _tie_free_eps(numerators: np.ndarray, denominator: int, ratio: float, zero_point: int) -> tuple[float, float]:
    """The eps in j * 2^-16 (j = 1..64) that keeps the MUL's products n * q * (1 - eps) / D * ratio, for
    every int8 input n - zero_point and numerator q, farthest from a rounding boundary (k + 0.5),
    relative to the tolerance 1e-5 x max(1, |value|); and that distance in tolerances."""
    n = (np.arange(-128, 128) - zero_point).astype(np.float64)[:, None]
    best = (0.0, -1.0)
    for j in range(1, 65):
        eps = j * 2.0**-16
        v = n * numerators[None, :] * (_float32((1.0 - eps) / denominator) * ratio)
        to_boundary = np.abs(v - np.floor(v) - 0.5)
        margin = float(np.min(to_boundary / (1e-5 * np.maximum(1.0, np.abs(v)))))
        if margin > best[1]:
            best = (eps, margin)
    return best


def _float32(x: float) -> float:
    """What a float32 scale field stores."""
    return float(np.float32(x))


def _set_int8_constant(model, sub, index: int, values: np.ndarray, scale: float) -> None:
    """Tensor `index` holds `values` (int8) with a symmetric per-tensor scale; its buffer is rewritten in
    place unless another tensor shares it."""
    schema = _schema()
    tensor = sub.tensors[index]
    data = np.frombuffer(np.ascontiguousarray(values, dtype=np.int8).tobytes(), dtype=np.uint8)
    if sum(t.buffer == tensor.buffer for s in model.subgraphs for t in s.tensors) > 1:
        model.buffers.append(schema.BufferT())
        tensor.buffer = len(model.buffers) - 1
    model.buffers[tensor.buffer].data = data
    q = schema.QuantizationParametersT()
    q.scale, q.zeroPoint, q.quantizedDimension = [scale], [0], 0
    tensor.shape, tensor.type, tensor.quantization = list(values.shape), schema.TensorType.INT8, q


def unfuse_pool_relu(flatbuffer: bytes) -> bytes:
    """Pools of a full-integer model lose their fused RELU, which becomes a RELU operator after them.

    With the pools moved after their 1x1 convolutions the converter fuses the branch's RELU into
    AVERAGE_POOL_2D, which Coral's compiler refuses ("no fused activation function"; it would cut the
    graph there). TFLite's int8 pools keep their input's scale and zero point, so the RELU operator reads
    and writes that same quantization and clamps at the zero point, exactly as the fused activation did:
    no output bit changes (tested). Where the zero point is already the int8 minimum the clamp is implicit
    and the RELU is simply dropped."""
    from edgeincep.litert.graph import builtin_code

    schema = _schema()
    model = load(flatbuffer)
    pools = {i for i, oc in enumerate(model.operatorCodes)
             if builtin_code(oc) in (schema.BuiltinOperator.AVERAGE_POOL_2D, schema.BuiltinOperator.MAX_POOL_2D)}
    relu_code: int | None = None
    changed = 0
    for sub in model.subgraphs:
        ops = []
        for op in sub.operators:
            ops.append(op)
            opts = op.builtinOptions
            if op.opcodeIndex not in pools or getattr(opts, "fusedActivationFunction", 0) != \
                    schema.ActivationFunctionType.RELU:
                continue
            out = sub.tensors[op.outputs[0]]
            if out.type != schema.TensorType.INT8:
                continue
            opts.fusedActivationFunction = schema.ActivationFunctionType.NONE
            changed += 1
            q = out.quantization
            zero = int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None and len(q.zeroPoint) else 0
            if zero == -128:
                continue  # 0.0 is already the lowest value the tensor holds
            if relu_code is None:
                relu_code = opcode(model, schema.BuiltinOperator.RELU)
            pre = copy.deepcopy(out)
            pre.name = _name(out) + "/pre_relu"
            sub.tensors.append(pre)
            final = op.outputs[0]
            op.outputs[0] = len(sub.tensors) - 1
            relu = schema.OperatorT()
            relu.opcodeIndex, relu.inputs, relu.outputs = relu_code, [op.outputs[0]], [final]
            ops.append(relu)
        sub.operators = ops
    if not changed:
        return flatbuffer
    return pack(model, len(flatbuffer))


def float16_weights(float_flatbuffer: bytes) -> bytes:
    """The float model with every float32 constant stored as float16 and widened by a DEQUANTIZE operator
    at the start of the graph: what TFLiteConverter writes for `supported_types=[tf.float16]` (same
    operators, same float16 values, the same two metadata entries; tested to give bit-identical outputs).

    Made from the float flatbuffer already in hand instead of a second onnx2tf + converter run, which cost
    23 s and 2.4 GB on full-size Inception-ResNet-v2."""
    schema = _schema()
    model = load(float_flatbuffer)
    halves: dict[int, int] = {}  # float32 buffer -> its float16 copy (a buffer may serve several tensors)
    dequantize: int | None = None
    for sub in model.subgraphs:
        constants = [(i, t) for i, t in enumerate(sub.tensors) if t.type == schema.TensorType.FLOAT32 and t.buffer
                     and model.buffers[t.buffer].data is not None and len(model.buffers[t.buffer].data)]
        widen = []
        for index, t in constants:
            if t.buffer not in halves:
                half = schema.BufferT()
                half.data = np.frombuffer(np.frombuffer(bytes(model.buffers[t.buffer].data), dtype="<f4")
                                          .astype("<f2").tobytes(), dtype=np.uint8)
                model.buffers.append(half)
                halves[t.buffer] = len(model.buffers) - 1
            stored = copy.deepcopy(t)
            stored.type, stored.buffer = schema.TensorType.FLOAT16, halves[t.buffer]
            sub.tensors.append(stored)
            model.buffers.append(schema.BufferT())
            t.buffer = len(model.buffers) - 1  # the float32 tensor is now computed, at the start of the graph
            if dequantize is None:
                dequantize = opcode(model, schema.BuiltinOperator.DEQUANTIZE)
                code = model.operatorCodes[dequantize]
                code.version = max(code.version or 1, 3)  # version 3: float16 input
            op = schema.OperatorT()
            op.opcodeIndex, op.inputs, op.outputs = dequantize, [len(sub.tensors) - 1], [index]
            widen.append(op)
        sub.operators = widen + list(sub.operators)
    for old in halves:
        model.buffers[old].data = None  # the float32 values are not kept
    if dequantize is None:
        return float_flatbuffer
    # As the converter writes them: the runtime version a float16 DEQUANTIZE needs (NUL-padded to 16
    # bytes) and the flag that lets delegates compute with fp16 weights and fp32 accumulation.
    entries = {b"min_runtime_version": b"1.15.0".ljust(16, b"\0"), b"reduced_precision_support": b"fp16accfp32"}
    for meta in model.metadata or []:
        name = meta.name if isinstance(meta.name, bytes) else str(meta.name).encode()
        if name in entries:
            model.buffers[meta.buffer].data = np.frombuffer(entries.pop(name), dtype=np.uint8)
    for name, value in entries.items():
        buf = schema.BufferT()
        buf.data = np.frombuffer(value, dtype=np.uint8)
        model.buffers.append(buf)
        meta = schema.MetadataT()
        meta.name, meta.buffer = name.decode(), len(model.buffers) - 1
        model.metadata = [*(model.metadata or []), meta]
    return pack(model, len(float_flatbuffer))
