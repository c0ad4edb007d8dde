"""Shared by the head tests: multi-level features of an image and a guide-recording upsampler."""
from typing import List, Sequence, Tuple

import torch

from mmdynup.upsamplers.baselines import BilinearUpsample


def pyramid_sizes(height: int, width: int, strides: Sequence[int] = (4, 8, 16, 32)
                  ) -> List[Tuple[int, int]]:
    """Feature sizes of a stride-2-per-stage backbone (ceil rounding, as padded convs give)."""
    return [(-(-height // stride), -(-width // stride)) for stride in strides]


def pyramid_features(channels: Sequence[int], height: int, width: int, batch: int = 2,
                     dtype=torch.float64, seed: int = 0) -> List[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, h, w, generator=generator, dtype=dtype)
            for c, (h, w) in zip(channels, pyramid_sizes(height, width))]


class RecordingGuidedUpsample(BilinearUpsample):
    """Bilinear interpolation declared guided, recording every ``(x, guide)`` it receives: lets a
    test check which tensors a head passes, without registering a name."""

    requires_guide = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def upsample(self, x, guide, size):
        self.calls.append((x, guide))
        return super().upsample(x, guide, size)


def packed_batch(height: int, width: int, ground_truth, batch: int = 2) -> dict:
    """A packed mmseg batch as the data loader hands it to the data preprocessor: uint8 images
    (3, H, W) and SegDataSamples whose ground truth ``ground_truth(generator)`` returns as
    ``(field, tensor)``, e.g. ``('gt_sem_seg', labels)`` or ``('gt_depth_map', depths)``."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    generator = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, height, width), generator=generator,
                                    dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                             pad_shape=(height, width)))
        field, data = ground_truth(generator)
        setattr(sample, field, PixelData(data=data))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)
