"""MIRL's deeper plain ViTs (ViT-S-54, ViT-B-48, ViT-B-24, ViT-B) as mmseg backbones.

MIRL (Huang et al., "Masked Image Residual Learning for Scaling Deeper Vision Transformers",
NeurIPS 2023, Tab. 1) pretrains plain pre-LN ViTs that are deeper than wide: ViT-S-54 (54 blocks x
384, 12 heads, 96 M) and ViT-B-48 (48 x 768, 12 heads, 341 M). :class:`MIRLViT` is mmseg's ``MAE``
backbone (pre-LN blocks, qkv bias, absolute position embedding, layer scale) with these presets
and two changes that make it the MIRL encoder:

* no relative position bias by default (MIRL has none; mmseg's ``MAE`` adds a zero-initialised
  table per block whose size ties the model to ``img_size``);
* the absolute position embedding is resized bicubically to the input's patch grid at run time,
  so any input size works (mmseg's ``MAE`` only resizes it when loading a checkpoint).

Layer scale (``gamma_1``/``gamma_2``, initialised to ``init_values=1.0`` as in mmseg's MAE recipe)
is not part of MIRL checkpoints; with ``init_values=1.0`` the network equals the MIRL encoder when
a checkpoint is loaded, and the gammas are learned during fine-tuning.

``out_indices`` presets: MIRL's encoder is six equal segments; the paper's downstream indices are
not public, so the four outputs are taken at the ends of segments 2, 3, 4 and 6 (of 6). For the
12-block ViT-B this is exactly mmseg's MAE-B choice ``[3, 5, 7, 11]``; ViT-B-24 ``[7, 11, 15,
23]``, ViT-B-48 ``[15, 23, 31, 47]``, ViT-S-54 ``[17, 26, 35, 53]``.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.model import ModuleList
from mmseg.models.backbones import MAE
from mmseg.models.backbones.mae import MAEAttention, MAETransformerEncoderLayer
from mmseg.registry import MODELS
from torch import Tensor, nn

#: Architecture presets: width, depth, heads, MLP ratio, default out_indices (see module doc).
MIRL_ARCHS: Dict[str, dict] = {
    'vit-b': dict(embed_dims=768, num_layers=12, num_heads=12, mlp_ratio=4,
                  out_indices=(3, 5, 7, 11)),
    'vit-b24': dict(embed_dims=768, num_layers=24, num_heads=12, mlp_ratio=4,
                    out_indices=(7, 11, 15, 23)),
    'vit-b48': dict(embed_dims=768, num_layers=48, num_heads=12, mlp_ratio=4,
                    out_indices=(15, 23, 31, 47)),
    'vit-s54': dict(embed_dims=384, num_layers=54, num_heads=12, mlp_ratio=4,
                    out_indices=(17, 26, 35, 53)),
}


def segment_end_out_indices(num_layers: int, num_segments: int = 6,
                            segments: Sequence[int] = (2, 3, 4, 6)) -> tuple:
    """Block indices at the ends of the given (1-based) segments of ``num_segments`` equal ones."""
    if num_layers % num_segments:
        raise ValueError(f'num_layers={num_layers} must be divisible by '
                         f'num_segments={num_segments}')
    length = num_layers // num_segments
    return tuple(length * segment - 1 for segment in segments)


def relative_position_index(height: int, width: int) -> Tensor:
    """BEiT's (1 + h*w, 1 + h*w) index into the relative position table: patch pairs by their
    (dy, dx) offset, then three slots for cls-to-patch, patch-to-cls and cls-to-cls."""
    rows, columns = torch.meshgrid(torch.arange(height), torch.arange(width), indexing='ij')
    coords = torch.stack([rows.flatten(), columns.flatten()])
    offsets = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    patch_index = (offsets[..., 0] + height - 1) * (2 * width - 1) + offsets[..., 1] + width - 1
    num_distances = (2 * height - 1) * (2 * width - 1) + 3
    index = torch.zeros((height * width + 1,) * 2, dtype=patch_index.dtype)
    index[1:, 1:] = patch_index
    index[0, :] = num_distances - 3
    index[:, 0] = num_distances - 2
    index[0, 0] = num_distances - 1
    return index


class MIRLAttention(MAEAttention):
    """mmseg's MAE attention; with ``rel_pos_bias=False`` no relative position table is built
    (the forward then adds no bias, as in MIRL)."""

    def __init__(self, *args, rel_pos_bias: bool = False, **kwargs):
        self.rel_pos_bias = rel_pos_bias
        super().__init__(*args, **kwargs)

    def _init_rel_pos_embedding(self):
        if not self.rel_pos_bias:
            self.relative_position_bias_table = None
            return
        height, width = self.window_size
        self.num_relative_distance = (2 * height - 1) * (2 * width - 1) + 3
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros(self.num_relative_distance, self.num_heads))
        self.register_buffer('relative_position_index',
                             relative_position_index(height, width))


class MIRLEncoderLayer(MAETransformerEncoderLayer):
    """mmseg's MAE layer (pre-LN, layer scale) with :class:`MIRLAttention`; with
    ``layer_scale=False`` the gammas are the constant 1.0 (no parameters), the MIRL block."""

    def __init__(self, *args, rel_pos_bias: bool = False, layer_scale: bool = True, **kwargs):
        self._rel_pos_bias = rel_pos_bias
        super().__init__(*args, **kwargs)
        if not layer_scale:  # mmseg's forward multiplies by gamma_1 / gamma_2
            del self.gamma_1, self.gamma_2
            self.gamma_1, self.gamma_2 = 1.0, 1.0

    def build_attn(self, attn_cfg):
        self.attn = MIRLAttention(**attn_cfg, rel_pos_bias=self._rel_pos_bias)


@MODELS.register_module()
class MIRLViT(MAE):
    """MIRL deeper ViT backbone (mmseg ``MAE`` with presets; see the module docstring).

    Args:
        arch: ``'vit-s54'``, ``'vit-b48'``, ``'vit-b24'``, ``'vit-b'`` or a dict with
            ``embed_dims``, ``num_layers``, ``num_heads`` (and optionally ``mlp_ratio``,
            ``out_indices``).
        img_size: training crop size; the position embedding is built for it and resized at run
            time for other inputs.
        out_indices: blocks whose output is returned as (B, C, H/p, W/p); default: the preset's
            segment ends.
        init_values: initial layer-scale value (1.0: the checkpoint's network unchanged).
        rel_pos_bias: keep mmseg's zero-initialised relative position bias tables (inputs must
            then have size ``img_size``).
        layer_scale: learnable layer-scale gammas (mmseg's MAE recipe, default); False gives the
            MIRL / MAE fine-tuning block without them (the image classifier).
        norm_cfg: LayerNorm config; eps 1e-6 as MIRL.
        embed_dims, num_layers, num_heads, mlp_ratio: override the preset (tiny test twins).
        Other arguments as mmseg's ``MAE``.

    Example:
        >>> backbone = MIRLViT(arch='vit-s54', img_size=64, num_layers=6)  # a 6-block twin
        >>> [tuple(out.shape) for out in backbone(torch.randn(1, 3, 64, 96))]
        [(1, 384, 4, 6), (1, 384, 4, 6), (1, 384, 4, 6), (1, 384, 4, 6)]
    """

    def __init__(self,
                 arch: Union[str, dict] = 'vit-b48',
                 img_size: Union[int, tuple] = 224,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 out_indices: Optional[Sequence[int]] = None,
                 attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 act_cfg: dict = dict(type='GELU'),
                 final_norm: bool = False,
                 norm_eval: bool = False,
                 init_values: float = 1.0,
                 rel_pos_bias: bool = False,
                 layer_scale: bool = True,
                 embed_dims: Optional[int] = None,
                 num_layers: Optional[int] = None,
                 num_heads: Optional[int] = None,
                 mlp_ratio: Optional[int] = None,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None):
        preset = self._preset(arch)
        overrides = dict(embed_dims=embed_dims, num_layers=num_layers, num_heads=num_heads,
                         mlp_ratio=mlp_ratio)
        preset.update({key: value for key, value in overrides.items() if value is not None})
        if out_indices is None:
            out_indices = preset['out_indices']
            if num_layers is not None:  # a resized twin keeps the segment-end rule
                out_indices = segment_end_out_indices(preset['num_layers'])
        self.arch = arch if isinstance(arch, str) else 'custom'
        self.rel_pos_bias = bool(rel_pos_bias)
        self.layer_scale = bool(layer_scale)
        super().__init__(
            img_size=img_size, patch_size=patch_size, in_channels=in_channels,
            embed_dims=preset['embed_dims'], num_layers=preset['num_layers'],
            num_heads=preset['num_heads'], mlp_ratio=preset.get('mlp_ratio', 4),
            out_indices=list(out_indices), attn_drop_rate=attn_drop_rate,
            drop_path_rate=drop_path_rate, norm_cfg=norm_cfg, act_cfg=act_cfg,
            final_norm=final_norm, norm_eval=norm_eval, pretrained=pretrained,
            init_values=init_values, init_cfg=init_cfg)

    def _build_layers(self):
        """As ``MAE._build_layers`` (linear drop-path schedule), with :class:`MIRLEncoderLayer`."""
        step = self.drop_path_rate / max(self.num_layers - 1, 1)
        self.layers = ModuleList(
            MIRLEncoderLayer(
                embed_dims=self.embed_dims, num_heads=self.num_heads,
                feedforward_channels=int(self.mlp_ratio * self.embed_dims),
                attn_drop_rate=self.attn_drop_rate, drop_path_rate=step * i,
                num_fcs=self.num_fcs, bias=True, act_cfg=self.act_cfg, norm_cfg=self.norm_cfg,
                window_size=self.patch_shape, attn_cfg=dict(), init_values=self.init_values,
                rel_pos_bias=self.rel_pos_bias, layer_scale=self.layer_scale)
            for i in range(self.num_layers))

    @staticmethod
    def _preset(arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            if arch.lower() not in MIRL_ARCHS:
                raise ValueError(f'arch must be one of {sorted(MIRL_ARCHS)} or a dict, '
                                 f'got {arch!r}')
            return dict(MIRL_ARCHS[arch.lower()])
        if isinstance(arch, dict):
            missing = {'embed_dims', 'num_layers', 'num_heads'} - set(arch)
            if missing:
                raise ValueError(f'an arch dict needs embed_dims, num_layers and num_heads; '
                                 f'missing {sorted(missing)} in {arch}')
            preset = dict(arch)
            preset.setdefault('out_indices', segment_end_out_indices(preset['num_layers']))
            return preset
        raise TypeError(f'arch must be a preset name or a dict, got {type(arch).__name__}')

    def train(self, mode: bool = True) -> 'MIRLViT':
        """As ``BEiT.train`` (norm_eval), but returning ``self`` like ``nn.Module.train``."""
        super().train(mode)
        return self

    def position_embedding(self, grid: Sequence[int]) -> Tensor:
        """The (1, 1 + h*w, D) position embedding for an h x w patch grid: the stored one when
        the grid matches ``img_size``, otherwise its patch part resized bicubically."""
        grid = tuple(int(size) for size in grid)
        if grid == tuple(self.patch_shape):
            return self.pos_embed
        if self.rel_pos_bias:
            raise ValueError(f'inputs must give a {self.patch_shape} patch grid (img_size) '
                             f'when rel_pos_bias=True, got {grid}')
        cls_slot, patches = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        height, width = self.patch_shape
        patches = patches.reshape(1, height, width, -1).permute(0, 3, 1, 2)
        patches = F.interpolate(patches, size=grid, mode='bicubic', align_corners=False)
        return torch.cat([cls_slot, patches.flatten(2).transpose(1, 2)], dim=1)

    def forward(self, inputs: Tensor) -> tuple:
        """(B, C, H, W) -> tuple of (B, D, H/p, W/p) maps at ``out_indices`` (cls dropped)."""
        if inputs.dim() != 4:
            raise ValueError(f'inputs must be (B, C, H, W), got shape {tuple(inputs.shape)}')
        tokens, grid = self.patch_embed(inputs)
        cls_tokens = self.cls_token.expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls_tokens, tokens], dim=1) + self.position_embedding(grid)
        outputs = []
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index == last and self.final_norm:
                x = self.norm1(x)
            if index in self.out_indices:
                patches = x[:, 1:]
                outputs.append(patches.transpose(1, 2).reshape(
                    patches.shape[0], patches.shape[2], *grid).contiguous())
        return tuple(outputs)
