"""A2U-style image matting on mmengine with any registered upsampler (Dai et al., CVPR 2021; the
network FADE and SAPA run their Composition-1K tables on, poppinace/fade ``a2u_matting``).

Network (input: RGB normalised with ImageNet statistics and the trimap / 255, 4 channels)::

    encoder   ResNet-34, 4 input channels, three stages (output stride 16): features
              e_1 (1/2, stem, 64), e_2 (1/4, 64), e_3 (1/8, 128), e_4 (1/16, 256); e_0 the input
    context   ASPP on e_4: 1x1 and depthwise-separable 3x3 branches at dilations 6, 12, 18,
              image pooling, 1x1 projection to 256, dropout 0.5
    decoder   four x2 stages, coarsest first, i = 3, 2, 1, 0 (1/16 -> 1/8 -> 1/4 -> 1/2 -> 1/1):
                  s_i = shortcut_i(e_i)                    3x3 ConvModule to the width of x
                  x   = up_i.merge(x, s_i) = s_i + up_i(x, guide=s_i)
                  x   = two 3x3 ConvModules             (widths 128, 64, 64, 32)
    prediction  3x3 ConvModule to 1 channel, then a 3x3 conv without bias (the authors' pred)

The widths of x and of the shortcuts are the authors' (256 -> 128 -> 64 -> 64 entering the four
stages; shortcuts 128 -> 256, 64 -> 128, 64 -> 64, 4 -> 64). Guided upsamplers are guided by the
shortcut, the encoder feature of the output resolution at the width of x, and merge through the
upsampler's own ``merge`` seam so that no line here branches on the operator. Differences from the
authors' network (configs/matting/README.md): mmseg's ResNet-34 (stride-2 stem, six blocks in the
third stage, strided convolutions) instead of their stride-1 stem with max pooling, four third-stage
blocks and A2U / IndexNet *encoder* downsampling; the authors guide with the encoder feature
before each downsampling, which is one their ResNet has and mmseg's does not.

Training: ``matting_loss`` (0.5 alpha + 0.5 composition Charbonnier on the unknown region).
Test: reflect-pad to a multiple of ``stride``, crop back, clip to [0, 1], and restore the
trimap's known regions.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.logging import print_log
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.runner.checkpoint import CheckpointLoader
from mmengine.structures import BaseDataElement
from mmseg.models.decode_heads.sep_aspp_head import DepthwiseSeparableASPPModule
from mmseg.registry import MODELS
from torch import Tensor, nn

from ..checks import check_positive_int
from ..depth.resnet_stem import ResNetWithStem  # noqa: F401  (registers the encoder)
from ..upsamplers.host_config import build_head_upsampler
from .loss import matting_loss

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@MODELS.register_module()
class MattingDataPreprocessor(BaseDataPreprocessor):
    """Batch the packed samples: (B, 3, H, W) images, BGR -> RGB, normalised, with the trimap / 255
    as a fourth channel: ``inputs`` (B, 4, H, W). The samples of one batch must have the same
    size (training crops; test with ``batch_size=1``).

    Args:
        mean, std: RGB statistics on the 0..255 scale (ImageNet's, the authors').
        bgr_to_rgb: convert the cv2-read images to RGB first.
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, bgr_to_rgb: bool = True) -> None:
        super().__init__()
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1),
                             False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1),
                             False)
        self.bgr_to_rgb = bgr_to_rgb

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        images, samples = data['inputs'], data['data_samples']
        sizes = sorted({tuple(image.shape[-2:]) for image in images})
        if len(sizes) > 1:
            raise ValueError(f'a matting batch holds images of sizes {sizes}; crop them to one '
                             f'size (training) or evaluate with batch_size=1')
        images = torch.stack(list(images)).float()
        if self.bgr_to_rgb:
            images = images.flip(1)
        images = (images - self.mean) / self.std
        trimaps = torch.stack([sample.trimap for sample in samples]).float() / 255
        return dict(inputs=torch.cat([images, trimaps], dim=1), data_samples=samples)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling of the A2U matting network: (B, C, h, w) -> (B, out, h, w).

    Branches: a 1x1 ConvModule, depthwise-separable 3x3 ConvModules at ``dilations[1:]``
    (mmseg's ``DepthwiseSeparableASPPModule``) and image pooling; concatenated, projected by a
    1x1 ConvModule, dropout.
    """

    def __init__(self, in_channels: int, channels: int, dilations: Sequence[int] = (1, 6, 12, 18),
                 dropout: float = 0.5, norm_cfg: Optional[dict] = None,
                 act_cfg: Optional[dict] = None) -> None:
        super().__init__()
        self.branches = DepthwiseSeparableASPPModule(
            dilations=tuple(dilations), in_channels=in_channels, channels=channels,
            conv_cfg=None, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            ConvModule(in_channels, channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg))
        self.project = ConvModule((len(dilations) + 1) * channels, channels, 1,
                                  norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        pooled = F.interpolate(self.image_pool(x), size=x.shape[-2:], mode='nearest')
        return self.dropout(self.project(torch.cat([*self.branches(x), pooled], dim=1)))


class DecoderStage(nn.Module):
    """One x2 decoder stage: ``convs(up.merge(x, shortcut(skip)))``.

    Shapes: x (B, C, h, w), skip (B, C_skip, H, W) with H <= 2h, W <= 2w -> (B, C_out, H, W).
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int,
                 upsample_cfg: Mapping, norm_cfg: Optional[dict], act_cfg: Optional[dict],
                 owner: str) -> None:
        super().__init__()
        conv = dict(kernel_size=3, padding=1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.shortcut = ConvModule(skip_channels, in_channels, **conv)
        self.upsampler = build_head_upsampler(upsample_cfg, 'upsample_cfg', owner,
                                              in_channels=in_channels,
                                              guide_channels=in_channels)
        self.convs = nn.Sequential(ConvModule(in_channels, out_channels, **conv),
                                   ConvModule(out_channels, out_channels, **conv))

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.convs(self.upsampler.merge(x, self.shortcut(skip)))


def with_input_channels(weight: Tensor, channels: int) -> Tensor:
    """A pretrained first-conv weight (O, 3, k, k) widened to ``channels`` input channels with
    zeros (the authors' trimap channel starts at zero)."""
    if weight.shape[1] >= channels:
        return weight[:, :channels]
    extra = weight.new_zeros(weight.shape[0], channels - weight.shape[1], *weight.shape[2:])
    return torch.cat([weight, extra], dim=1)


@MODELS.register_module()
class A2UMatting(BaseModel):
    """A2U matting network with any upsampler (module docstring: layout and positions).

    Args:
        backbone: the encoder config, a ``ResNetWithStem`` (mmdynup.depth) returning the stem
            and three stages: ``(e_1, e_2, e_3, e_4)`` at strides 2, 4, 8, 16.
        encoder_channels: widths of ``(e_1, e_2, e_3, e_4)``.
        upsample_cfg: the upsampler of every decoder stage, ``dict(type='FADE')``; the stage
            supplies ``in_channels``, ``guide_channels`` and ``scale_factor=2``.
        in_channels: network input channels (RGB + trimap).
        aspp_channels: ASPP output width (x entering the first stage).
        aspp_dilations: ASPP dilations (output stride 16: 1, 6, 12, 18).
        decoder_channels: output widths of the four stages, coarsest first.
        norm_cfg, act_cfg: of the ASPP and decoder ConvModules (the authors: batch norm,
            LeakyReLU 0.01).
        alpha_loss_weight: weight of the alpha loss (the composition loss gets the rest).
        charbonnier_epsilon: epsilon of the Charbonnier losses.
        stride: test inputs are padded to a multiple of it.
        pretrained: ImageNet checkpoint of a 3-channel ResNet-34 (``'torchvision://resnet34'``):
            loaded into the encoder with the trimap channel of the first conv set to zero.
        data_preprocessor: defaults to :class:`MattingDataPreprocessor`.

    Shapes: ``inputs`` (B, 4, H, W) -> alpha (B, 1, H, W) (``mode='tensor'``, unclipped).
    """

    def __init__(self, backbone: dict, encoder_channels: Sequence[int] = (64, 64, 128, 256),
                 upsample_cfg: Optional[Mapping] = None, in_channels: int = 4,
                 aspp_channels: int = 256, aspp_dilations: Sequence[int] = (1, 6, 12, 18),
                 decoder_channels: Sequence[int] = (128, 64, 64, 32),
                 norm_cfg: Optional[dict] = None, act_cfg: Optional[dict] = None,
                 alpha_loss_weight: float = 0.5, charbonnier_epsilon: float = 1e-6,
                 stride: int = 16, pretrained: Optional[str] = None,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[dict] = None) -> None:
        owner = type(self).__name__
        if data_preprocessor is None:
            data_preprocessor = dict(type='MattingDataPreprocessor')
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        for name, widths in (('encoder_channels', encoder_channels),
                             ('decoder_channels', decoder_channels)):
            if not isinstance(widths, (list, tuple)) or len(widths) != 4:
                raise ValueError(f'{owner}: {name} must give 4 widths (strides 2, 4, 8, 16 for '
                                 f'the encoder; the four x2 stages, coarsest first, for the '
                                 f'decoder), got {widths!r}')
        if not 0 <= alpha_loss_weight <= 1:
            raise ValueError(f'{owner}: alpha_loss_weight must lie in [0, 1], got '
                             f'{alpha_loss_weight!r}')
        norm_cfg = dict(type='BN') if norm_cfg is None else norm_cfg
        act_cfg = dict(type='LeakyReLU', negative_slope=0.01) if act_cfg is None else act_cfg
        upsample_cfg = dict(type='BilinearUpsample') if upsample_cfg is None else upsample_cfg
        self.in_channels = check_positive_int('in_channels', in_channels)
        self.stride = check_positive_int('stride', stride)
        self.alpha_loss_weight = alpha_loss_weight
        self.charbonnier_epsilon = charbonnier_epsilon
        self.pretrained = pretrained
        self.backbone = MODELS.build(backbone)
        self.aspp = ASPP(encoder_channels[-1], aspp_channels, aspp_dilations, norm_cfg=norm_cfg,
                         act_cfg=act_cfg)
        # Coarsest stage first: x widths [aspp, d_0, d_1, d_2], skips e_3, e_2, e_1, input.
        x_widths = [aspp_channels, *decoder_channels[:-1]]
        skip_widths = [*encoder_channels[-2::-1], self.in_channels]
        self.decoder = nn.ModuleList(
            DecoderStage(width, skip, out, upsample_cfg, norm_cfg, act_cfg, owner)
            for width, skip, out in zip(x_widths, skip_widths, decoder_channels))
        self.predictor = nn.Sequential(
            ConvModule(decoder_channels[-1], 1, 3, padding=1, norm_cfg=norm_cfg, act_cfg=act_cfg),
            nn.Conv2d(1, 1, 3, padding=1, bias=False))

    def init_weights(self) -> None:
        super().init_weights()
        if self.pretrained is None:
            return
        checkpoint = CheckpointLoader.load_checkpoint(self.pretrained, map_location='cpu')
        state = checkpoint.get('state_dict', checkpoint)
        own = self.backbone.state_dict()
        kept = {key: value for key, value in state.items() if key in own}
        kept['conv1.weight'] = with_input_channels(kept['conv1.weight'], self.in_channels)
        missing = sorted(set(own) - set(kept))
        if missing:
            raise KeyError(f'pretrained={self.pretrained!r} lacks encoder weights {missing[:5]}; '
                           f'pass an ImageNet ResNet checkpoint of the same depth')
        self.backbone.load_state_dict(kept)
        unused = sorted({key.split('.')[0] for key in set(state) - set(own)})
        print_log(f'loaded {len(kept)} encoder tensors from {self.pretrained} (trimap channel '
                  f'of conv1 set to zero; not used: {", ".join(unused)})', logger='current')

    def extract_alpha(self, inputs: Tensor) -> Tensor:
        """(B, 4, H, W) -> raw alpha (B, 1, H, W): the last stage merges onto the input's own
        shortcut, so any size comes back (each x2 step lands on the next encoder feature's
        ceil size; test inputs are padded to multiples of ``stride`` as the authors do)."""
        stem, *stages = self.backbone(inputs)
        skips = [inputs, stem, *stages[:-1]]  # strides 1, 2, 4, 8
        x = self.aspp(stages[-1])
        for stage, skip in zip(self.decoder, reversed(skips)):
            x = stage(x, skip)
        return self.predictor(x)

    def forward(self, inputs: Tensor, data_samples: Optional[List[BaseDataElement]] = None,
                mode: str = 'tensor'):
        if mode == 'tensor':
            return self.extract_alpha(inputs)
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        raise ValueError(f'mode must be "tensor", "loss" or "predict", got {mode!r}')

    def loss(self, inputs: Tensor, data_samples: List[BaseDataElement]) -> Dict[str, Tensor]:
        """The matting loss of a training batch: samples carry ``gt_alpha``, ``trimap``, ``fg``
        and ``bg`` (:class:`~mmdynup.matting.transforms.PackMattingInputs`)."""
        pred = self.extract_alpha(inputs)
        stacked = {key: torch.stack([getattr(sample, key) for sample in data_samples]).float()
                   for key in ('gt_alpha', 'trimap', 'fg', 'bg')}
        return matting_loss(pred, stacked['gt_alpha'], (stacked['trimap'] == 128).float(),
                            stacked['fg'] / 255, stacked['bg'] / 255, self.alpha_loss_weight,
                            self.charbonnier_epsilon)

    def predict(self, inputs: Tensor,
                data_samples: List[BaseDataElement]) -> List[BaseDataElement]:
        """Alpha of each test image: (1, H, W) in [0, 1] as ``pred_alpha`` on its sample, with the
        trimap's known pixels restored."""
        height, width = inputs.shape[-2:]
        pad_h, pad_w = (-height) % self.stride, (-width) % self.stride
        reflect = pad_h < height and pad_w < width  # torch's reflection needs pad < side
        padded = F.pad(inputs, (0, pad_w, 0, pad_h), mode='reflect' if reflect else 'replicate')
        alpha = self.extract_alpha(padded)[..., :height, :width].clamp(0, 1)
        for sample, prediction in zip(data_samples, alpha):
            trimap = sample.trimap.to(prediction.device)
            prediction = torch.where(trimap == 255, torch.ones_like(prediction), prediction)
            sample.pred_alpha = torch.where(trimap == 0, torch.zeros_like(prediction), prediction)
        return data_samples
