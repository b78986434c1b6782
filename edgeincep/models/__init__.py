"""Paper-faithful Inception-v4 / Inception-ResNet definitions and their registry.

As in timm, the registry never imports a model file: importing this package imports each family,
whose `@register_model` builders fill the registry.
"""
from edgeincep.core.preprocess import Preprocess
from edgeincep.models import inception_resnet_v1, inception_resnet_v2, inception_v4  # noqa: F401 - registers them
from edgeincep.models.registry import MIN_INPUT_SIZE, ModelSpec, create_model, get_spec, list_models

__all__ = ["MIN_INPUT_SIZE", "ModelSpec", "Preprocess", "create_model", "get_spec", "list_models"]
