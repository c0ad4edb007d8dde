"""mmdynup: dynamic feature upsamplers (CARAFE, FADE, SAPA, DySample) for OpenMMLab."""
import importlib.util

from .version import __version__
from .registry import MODELS
from . import upsamplers  # noqa: F401  (registers every upsampler)
from .api import build_upsampler, list_upsamplers
from . import converters  # noqa: F401
from . import mirl  # noqa: F401  (MIRL pretraining model: needs only torch and mmengine)
from . import optim  # noqa: F401  (registers CPUAutocastOptimWrapper)
from . import datasets  # noqa: F401  (registers the synthetic data sets where mmseg exists)
from . import matting  # noqa: F401  (composition_errors; the matting model and data with mmseg)
from .engine import allow_mmengine_checkpoints

# torch >= 2.6 loads with weights_only=True: allow exactly what mmengine checkpoints hold.
allow_mmengine_checkpoints()

# Host adapters load only when their host is installed; their own import errors still surface.
if importlib.util.find_spec('mmseg') is not None:
    from . import seg  # noqa: F401
    from . import depth  # noqa: F401  (depth heads and loss for mmseg's DepthEstimator)
    from . import backbones  # noqa: F401  (MIRLViT subclasses mmseg's MAE)
    from . import classification  # noqa: F401  (MIRL ImageNet fine-tuning; needs MIRLViT)
if importlib.util.find_spec('mmdet') is not None:
    from . import det  # noqa: F401

__all__ = ['__version__', 'MODELS', 'build_upsampler', 'list_upsamplers', 'converters']
