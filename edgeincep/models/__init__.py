"""Paper-faithful Inception-v4 / Inception-ResNet definitions and their registry."""
from edgeincep.models.registry import MIN_INPUT_SIZE, ModelSpec, Preprocess, create_model, get_spec, list_models

__all__ = ["MIN_INPUT_SIZE", "ModelSpec", "Preprocess", "create_model", "get_spec", "list_models"]
