"""Per-layer INT8 attribution: where each backend's INT8 artifact departs from FP32, in PyTorch's module names."""
