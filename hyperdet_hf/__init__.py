"""HyperDet-HF: the HyperDet synthetic-image detector (arXiv 2410.06044) on the Hugging Face stack."""

from .configuration_hyperdet import HyperDetConfig
from .hyper_lora import HyperLoraConfig, HyperLoraModel, HyperNetwork
from .modeling_hyperdet import HyperDetForImageClassification, HyperDetModel, HyperDetOutput
from .processing import default_image_processor

__version__ = "0.1.0"

__all__ = [
    "HyperDetConfig",
    "HyperDetForImageClassification",
    "HyperDetModel",
    "HyperDetOutput",
    "HyperLoraConfig",
    "HyperLoraModel",
    "HyperNetwork",
    "default_image_processor",
]
