"""Image matting (Adobe Composition-1K), the detail-sensitive task of the FADE and SAPA papers:
an A2U-style network with any upsampler, the data set and its pipeline, and the four errors.

``composition_errors`` (SAD, MSE, Grad, Conn of one image) needs only numpy and scipy and is
always importable. Importing the package where mmseg is installed (``mmdynup`` does) registers in
mmseg's registries: ``A2UMatting`` and ``MattingDataPreprocessor`` (``MODELS``),
``CompositionMattingDataset`` (``DATASETS``), the pipeline steps (``TRANSFORMS``) and
``CompositionErrors`` (``METRICS``). Configs: ``configs/matting/``.
"""
import importlib.util

from .errors import composition_errors

__all__ = ['composition_errors']

if importlib.util.find_spec('mmseg') is not None:
    from . import transforms  # noqa: F401  (registers the pipeline steps)
    from .dataset import CompositionMattingDataset
    from .loss import matting_loss
    from .metric import CompositionErrors
    from .model import A2UMatting, MattingDataPreprocessor

    __all__ += ['A2UMatting', 'CompositionErrors', 'CompositionMattingDataset',
                'MattingDataPreprocessor', 'matting_loss']
