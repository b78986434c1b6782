"""TensorRT (Jetson, NVIDIA GPUs): a ModelOpt Q/DQ INT8 ONNX checked on the CPU, the engine built on the device."""
