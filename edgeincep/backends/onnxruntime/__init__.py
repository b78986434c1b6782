"""ONNX Runtime on CPU: INT8 QDQ artifacts (x86 and ARM) with layer-level float fallback."""
