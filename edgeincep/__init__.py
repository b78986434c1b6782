"""edgeincep: Inception-family classifiers from PyTorch checkpoints to verified INT8 edge artifacts."""
__version__ = "0.1.0"
