"""SegFormer's all-MLP decode head with its direct bilinear resizes replaced by guided cascades of
x2 upsamplers, as in FADE (Lu et al., ECCV 2022) and SAPA (Lu et al., NeurIPS 2022).

Widths (authors' code: poppinace/fade ``segformer/segformer_head.py``; SAPA's training logs in
poppinace/sapa ``segformer/*.log``): every stage is first projected to the decoder width
(``embed_dim`` = 256 for MiT-B1 there, mmseg's ``channels`` = 256 here), and all six upsamplers
run at that width; their guides are the projected finer stages. With 4 stages c1..c4 (strides
4..32) and projections _c1.._c4:

    _c4: up0(_c4, guide=_c3) -> up1(., guide=_c2) -> up2(., guide=_c1)    (1/32 -> 1/4)
    _c3: up3(_c3, guide=_c2) -> up4(., guide=_c1)                         (1/16 -> 1/4)
    _c2: up5(_c2, guide=_c1)                                               (1/8  -> 1/4)

Two head forms around that one cascade (``head_form``):

``'mmseg'`` (default): mmseg 1.x's ``SegformerHead``: 1x1 ``ConvModule`` projections (conv, BN,
ReLU), fusion of c1..c4 (finest first). With ``upsample_cfg=None`` it is exactly mmseg's head.

``'authors'``: the head behind the papers' SegFormer-B1 tables (NVlabs' SegFormer head as the
FADE authors extended it): each projection is NVlabs' ``Linear`` with bias, no norm and no
activation (here a 1x1 ``nn.Conv2d``: the same function and the same default initialisation);
fusion of c4..c1 (coarsest first) into ``linear_fuse`` (1x1 conv without bias, BN, ReLU: mmseg's
``fusion_conv``); ``linear_pred`` (mmseg's ``conv_seg``, at the decoder width). With
``upsample_cfg=None`` it is NVlabs' stock ``SegFormerHead`` (with ``norm_cfg`` in ``linear_fuse``
where NVlabs hard-codes SyncBN).
"""
from __future__ import annotations

from typing import List, Mapping, Optional

import torch
from mmseg.models.decode_heads import SegformerHead
from mmseg.registry import MODELS
from torch import Tensor, nn

from .decode_losses import DEFAULT_LOSS_DECODE, build_decode_losses
from .pyramid_upsampler import PyramidUpsampler

HEAD_FORMS = ('mmseg', 'authors')


@MODELS.register_module()
class SegformerHeadWithUpsampler(SegformerHead):
    """mmseg's ``SegformerHead`` whose stages reach 1/4 through ``upsample_cfg`` cascades.

    Args:
        upsample_cfg: the upsampler of every x2 step, e.g. ``dict(type='FADE')``; six are built
            for four stages (``L (L - 1) / 2`` for L stages) with ``in_channels =
            guide_channels = channels``. ``None``: direct resize of every stage to 1/4 (the
            papers' bilinear baseline).
        head_form: ``'mmseg'`` (default) or ``'authors'``, see the module docstring. In the
            authors' form the projections are ``convs.<k>`` (1x1 conv with bias), the direct
            resize uses ``align_corners=False`` as NVlabs' head does, and, unless ``init_cfg``
            is given, ``conv_seg`` keeps PyTorch's default initialisation like the authors'
            ``linear_pred`` (NVlabs normal-initialises only its unused ``conv_seg``).
        **kwargs: ``SegformerHead`` arguments (``in_channels``, ``channels``, ...).

    Shapes: ``len(in_channels)`` maps (B, C_k, H_k, W_k), finest first, each finer stage at most
    twice the next coarser one -> logits (B, num_classes, H_0, W_0).

    Example:
        >>> import torch
        >>> head = SegformerHeadWithUpsampler(upsample_cfg=dict(type='FADELite'),
        ...                                   head_form='authors',
        ...                                   in_channels=[8, 16, 32, 64], channels=16,
        ...                                   num_classes=3, in_index=[0, 1, 2, 3])
        >>> feats = [torch.randn(2, c, 32 // 2 ** i, 24 // 2 ** i)
        ...          for i, c in enumerate([8, 16, 32, 64])]
        >>> head(feats).shape
        torch.Size([2, 3, 32, 24])
    """

    def __init__(self, upsample_cfg: Optional[Mapping] = None, head_form: str = 'mmseg',
                 **kwargs) -> None:
        if head_form not in HEAD_FORMS:
            raise ValueError(f'{type(self).__name__}: head_form={head_form!r} is not one of '
                             f'{HEAD_FORMS}; use \'mmseg\' (mmseg\'s SegformerHead) or '
                             f'\'authors\' (the FADE / SAPA papers\' NVlabs-style head)')
        if head_form == 'authors':
            kwargs.setdefault('init_cfg', None)
        loss_decode = kwargs.pop('loss_decode', DEFAULT_LOSS_DECODE)
        super().__init__(loss_decode=[], **kwargs)
        self.loss_decode = build_decode_losses(loss_decode, type(self).__name__)
        self.head_form = head_form
        if head_form == 'authors':
            self.convs = nn.ModuleList(nn.Conv2d(channels, self.channels, kernel_size=1)
                                       for channels in self.in_channels)
        self.pyramid_upsampler = PyramidUpsampler(
            len(self.in_channels), self.channels, upsample_cfg,
            interpolate_mode=self.interpolate_mode,
            align_corners=False if head_form == 'authors' else self.align_corners,
            key='upsample_cfg', owner=type(self).__name__)

    def forward(self, inputs: List[Tensor]) -> Tensor:
        """Stages (B, C_i, H_i, W_i), finest first -> logits (B, num_classes, H_0, W_0)."""
        inputs = self._transform_inputs(inputs)
        levels = self.pyramid_upsampler([conv(x) for conv, x in zip(self.convs, inputs)])
        if self.head_form == 'authors':
            levels = levels[::-1]  # NVlabs concatenates [_c4, _c3, _c2, _c1]
        return self.cls_seg(self.fusion_conv(torch.cat(levels, dim=1)))
