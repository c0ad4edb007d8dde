"""SAPA: Similarity-Aware Point Affiliation (Lu, Liu, Ye, Cao, NeurIPS 2022; journal version
"On Point Affiliation in Feature Upsampling").

Each high-resolution pixel of the guide ``y`` (the encoder feature, ``guide`` here) asks which of
the k x k low-resolution pixels around its parent it belongs to: the kernel is the softmax of the
similarity between its query and their keys (:func:`mmdynup.ops.local_similarity.local_attention`),
and the output is that kernel applied to the raw low-resolution feature ``x`` (the decoder
feature). Official code: poppinace/sapa (``SAPA.py`` class ``SAPA``, ``SAPAExp.py`` class
``SAPAExp``) and tiny-smart/sapa (``sapa_base.py`` class ``SAPA``).

Classes (registered names):

* :class:`SAPAI`: inner-product similarity of the (LayerNorm'd) features themselves, no projection
  (paper: SAPA-I). Needs ``guide_channels == in_channels``. The authors publish no code for it;
  it is SAPA-B with the query and key projections removed.
* :class:`SAPAB`: bilinear similarity, query ``q(LN y)``, key ``k(LN x)`` (paper: SAPA-B; official
  ``sapa.SAPA`` and ``sapaexp.SAPAExp`` with ``q_mode='encoder_only'``); ``q_mode='cat'`` takes
  the query from ``[LN y, nearest-up(x)]`` (``SAPAExp``), ``v_embed`` / ``out_channels`` pass the
  value through a linear layer on ``LN x`` (``SAPAExp``).
* :class:`SAPAG`: gated bilinear similarity (paper: SAPA-G; ``sapaexp.SAPAExp`` with
  ``q_mode='gate'``): ``q = g * qy(LN y) + (1 - g) * qx(nearest-up(x))``,
  ``g = nearest-up(sigmoid(gate(LN x)))``.
* :class:`SAPABase`: the journal code's SAPA-B (``sapa_base.SAPA``, also the ``'sapa'`` upsampler
  of the authors' segmentation / detection forks): 1x1 convolutions instead of Linear layers,
  optional GroupNorm(32) instead of LayerNorm, embedding 32.

All NeurIPS variants (SAPAI, SAPAB, SAPAG) normalise with LayerNorm over channels; the value is
the un-normalised ``x`` unless a value projection is asked for.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.local_similarity import local_attention, normalized_local_attention
from ..ops.normalized_projection import group_norm_projection, layer_norm_projection
from ..ops.reassembly import parent_index
from ..registry import register_upsampler
from ..checks import check_bool, check_odd_kernel, check_positive_int
from .base import Upsampler, memory_format_of

#: Query modes of the NeurIPS code (``SAPAExp``) that :class:`SAPAB` accepts.
SAPAB_QUERY_MODES = ('encoder_only', 'cat')
#: GroupNorm group count hard-coded in the journal code (``sapa_base.SAPA``).
GROUP_NORM_GROUPS = 32


class ChannelsLastSafeGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` that hands the CPU kernel an NCHW copy of a channels_last input which
    needs no gradient while the affine parameters do: torch's CPU backward crashes (segmentation
    fault) on exactly that case. Same parameters and state dict as ``nn.GroupNorm``."""

    def forward(self, input: Tensor) -> Tensor:
        if (input.device.type == 'cpu' and torch.is_grad_enabled() and not input.requires_grad
                and any(parameter.requires_grad for parameter in self.parameters())
                and memory_format_of(input) == torch.channels_last):
            input = input.contiguous()
        return super().forward(input)


def group_norm_32(name: str, channels: int) -> nn.GroupNorm:
    """GroupNorm(32, channels) as in the journal code, with an error naming ``name`` when the
    channel count is not a multiple of 32."""
    if channels % GROUP_NORM_GROUPS != 0:
        raise ValueError(f'norm=True builds GroupNorm({GROUP_NORM_GROUPS}, {name}), which needs '
                         f'{name} divisible by {GROUP_NORM_GROUPS}, got {name}={channels}; use a '
                         f'multiple of {GROUP_NORM_GROUPS} or norm=False')
    return ChannelsLastSafeGroupNorm(GROUP_NORM_GROUPS, channels)


def channels_last(layer: Callable[[Tensor], Tensor], feature: Tensor) -> Tensor:
    """Apply a layer that acts on the last dimension (LayerNorm, Linear) to (B, C, H, W)."""
    return layer(feature.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def nearest_up(feature: Tensor, size: Tuple[int, int], scale_factor: int) -> Tensor:
    """Nearest upsampling (B, C, H, W) -> (B, C, oH, oW): pixel (i, j) copies (i // s, j // s)."""
    rows = parent_index(size[0], scale_factor, feature.device)
    cols = parent_index(size[1], scale_factor, feature.device)
    return feature[:, :, rows][..., cols]


class _LayerNormSAPA(Upsampler):
    """Shared body of the NeurIPS variants: LayerNorm on both inputs, then local attention of a
    query built from the guide against keys built from ``x``; subclasses say how."""

    requires_guide = True

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 guide_channels: Optional[int] = None, up_kernel_size: int = 5,
                 norm: bool = True) -> None:
        super().__init__(in_channels, scale_factor, guide_channels)
        self.up_kernel_size = check_odd_kernel('up_kernel_size', up_kernel_size)
        self.norm = check_bool('norm', norm)
        # The official ``norm`` argument is a layer class: nn.LayerNorm, or nn.Identity for none.
        self.norm_y = nn.LayerNorm(self.guide_channels) if norm else nn.Identity()
        self.norm_x = nn.LayerNorm(self.in_channels) if norm else nn.Identity()

    def reset_parameters(self) -> None:
        """The authors' init: truncated normal (std 0.02) Linear weights, zero biases,
        LayerNorm weight 1 and bias 0."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02, a=-2.0, b=2.0)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def extra_repr(self) -> str:
        return (f'{super().extra_repr()}, up_kernel_size={self.up_kernel_size}, '
                f'norm={self.norm}')

    def upsample(self, x: Tensor, guide: Tensor, size: Tuple[int, int]) -> Tensor:
        query, key = self.query_and_key(guide, x, size)
        return local_attention(query, key, self.value(x), self.up_kernel_size, self.scale_factor)

    def query_and_key(self, guide: Tensor, x: Tensor,
                      size: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
        """Queries (B, d, oH, oW) from the guide (and ``x``), keys (B, d, H, W) from ``x``."""
        raise NotImplementedError

    def projection(self, feature: Tensor, norm: nn.Module, weight: Tensor,
                   bias: Optional[Tensor]) -> Tensor:
        """``Linear(LN feature)`` (B, E, H, W) with ``norm`` (``norm_y`` or ``norm_x``), without
        a normalised copy of the feature
        (:func:`~mmdynup.ops.normalized_projection.layer_norm_projection`)."""
        if self.norm:
            return layer_norm_projection(feature, norm.weight, norm.bias, norm.eps, weight, bias)
        return channels_last(lambda pixels: F.linear(pixels, weight, bias), feature)

    def value(self, x: Tensor) -> Tensor:
        return x


@register_upsampler
class SAPAI(_LayerNormSAPA):
    """SAPA-I: inner-product similarity, no projections (Lu et al., NeurIPS 2022).

    ``kernel(i, j) = softmax over the k x k window of <LN(y)[i], LN(x)[j]>``, output = kernel
    applied to the raw ``x``. Only the LayerNorm affine parameters are learned.

    Args:
        in_channels: channels C of ``x`` (the low-resolution feature that is upsampled).
        scale_factor: integer s >= 2.
        guide_channels: channels of the guide ``y``; must equal ``in_channels`` (the similarity
            is an inner product of the two features). Defaults to ``in_channels``.
        up_kernel_size: odd window size k (5).
        norm: LayerNorm over channels on both inputs before the inner product (True).

    Shapes: ``x`` (B, C, H, W), ``guide`` (B, C, oH, oW) -> (B, C, oH, oW).

    Example:
        >>> up = SAPAI(16)
        >>> up(torch.randn(2, 16, 5, 6), torch.randn(2, 16, 10, 12)).shape
        torch.Size([2, 16, 10, 12])
    """

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 guide_channels: Optional[int] = None, up_kernel_size: int = 5,
                 norm: bool = True) -> None:
        super().__init__(in_channels, scale_factor, guide_channels, up_kernel_size, norm)
        if self.guide_channels != self.in_channels:
            raise ValueError(f'SAPAI compares the features themselves, so guide_channels must '
                             f'equal in_channels={self.in_channels}, got guide_channels='
                             f'{self.guide_channels}; use SAPAB to project them instead')
        self.reset_parameters()

    def upsample(self, x: Tensor, guide: Tensor, size: Tuple[int, int]) -> Tensor:
        if not self.norm:
            return super().upsample(x, guide, size)
        # The query LN(guide) is as wide as the guide: the fused op keeps no normalised copy.
        return normalized_local_attention(guide, self.norm_y.weight, self.norm_y.bias,
                                          self.norm_y.eps, channels_last(self.norm_x, x), x,
                                          self.up_kernel_size, self.scale_factor)

    def query_and_key(self, guide, x, size):
        return channels_last(self.norm_y, guide), channels_last(self.norm_x, x)


class _ProjectedSAPA(_LayerNormSAPA):
    """NeurIPS variants with learned projections: key ``k(LN x)``, optional value layer ``v``."""

    def __init__(self, in_channels: int, scale_factor: int, guide_channels: Optional[int],
                 up_kernel_size: int, embedding_dim: int, qkv_bias: bool, norm: bool,
                 v_embed: bool, out_channels: Optional[int]) -> None:
        super().__init__(in_channels, scale_factor, guide_channels, up_kernel_size, norm)
        self.embedding_dim = check_positive_int('embedding_dim', embedding_dim)
        self.qkv_bias = check_bool('qkv_bias', qkv_bias)
        self.v_embed = check_bool('v_embed', v_embed)
        self._out_channels = self.in_channels if out_channels is None else check_positive_int(
            'out_channels', out_channels)
        self.k = nn.Linear(self.in_channels, self.embedding_dim, bias=qkv_bias)
        # As in SAPAExp: a value layer exists when asked for or when the width changes.
        if self.v_embed or self._out_channels != self.in_channels:
            self.v = nn.Linear(self.in_channels, self._out_channels, bias=qkv_bias)
        else:
            self.v = None

    @property
    def out_channels(self) -> int:
        return self._out_channels

    def extra_repr(self) -> str:
        text = f'{super().extra_repr()}, embedding_dim={self.embedding_dim}'
        if self.v is not None:
            text += f', v_embed=True, out_channels={self._out_channels}'
        return text

    def query_and_key(self, guide, x, size):
        return self.query(guide, x, size), self.projection(x, self.norm_x, self.k.weight,
                                                           self.k.bias)

    def query(self, guide: Tensor, x: Tensor, size: Tuple[int, int]) -> Tensor:
        raise NotImplementedError

    def value(self, x):
        return x if self.v is None else self.projection(x, self.norm_x, self.v.weight,
                                                        self.v.bias)


@register_upsampler
class SAPAB(_ProjectedSAPA):
    """SAPA-B: bilinear similarity ``<q(LN y), k(LN x)>`` (Lu et al., NeurIPS 2022; official
    ``sapa.SAPA`` and ``sapaexp.SAPAExp``).

    Args:
        in_channels: channels C of ``x`` (official ``dim_x``).
        scale_factor: integer s >= 2 (official ``up_factor``).
        guide_channels: channels of the guide ``y`` (official ``dim_y``; default ``in_channels``).
        up_kernel_size: odd window size k (5).
        embedding_dim: channels d of queries and keys (64).
        qkv_bias: bias in the query, key (and value) Linear layers (True).
        norm: LayerNorm over channels on both inputs (True; False = the official ``nn.Identity``).
        q_mode: ``'encoder_only'`` (query from ``LN y``; SAPA-B) or ``'cat'`` (query from the
            concatenation ``[LN y, nearest-up(x)]``, ``x`` not normalised, as in ``SAPAExp``).
            ``SAPAExp``'s third mode, ``'gate'``, is :class:`SAPAG`.
        v_embed: pass the value through a Linear layer on ``LN x`` (``SAPAExp``'s ``v_embed``).
        out_channels: output channels (official ``out_dim``; default ``in_channels``); any other
            value adds the value Linear layer as ``v_embed`` does.

    Shapes: ``x`` (B, C, H, W), ``guide`` (B, guide_channels, oH, oW) -> (B, out_channels, oH, oW).
    Parameters: ``norm_y``, ``norm_x`` (LayerNorm), ``q``, ``k`` (and ``v``) (Linear).

    Example:
        >>> up = SAPAB(16, guide_channels=24, embedding_dim=8)
        >>> up(torch.randn(2, 16, 5, 6), torch.randn(2, 24, 9, 11)).shape
        torch.Size([2, 16, 9, 11])
    """

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 guide_channels: Optional[int] = None, up_kernel_size: int = 5,
                 embedding_dim: int = 64, qkv_bias: bool = True, norm: bool = True,
                 q_mode: str = 'encoder_only', v_embed: bool = False,
                 out_channels: Optional[int] = None) -> None:
        if q_mode == 'gate':
            raise ValueError("q_mode='gate' is SAPA-G: build SAPAG (same arguments, no q_mode) "
                             "instead of SAPAB")
        if q_mode not in SAPAB_QUERY_MODES:
            raise ValueError(f'q_mode must be one of {SAPAB_QUERY_MODES}, got {q_mode!r}')
        super().__init__(in_channels, scale_factor, guide_channels, up_kernel_size,
                         embedding_dim, qkv_bias, norm, v_embed, out_channels)
        self.q_mode = q_mode
        query_inputs = self.guide_channels + (self.in_channels if q_mode == 'cat' else 0)
        self.q = nn.Linear(query_inputs, self.embedding_dim, bias=qkv_bias)
        self.reset_parameters()

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, q_mode={self.q_mode!r}'

    def query(self, guide, x, size):
        if self.q_mode == 'encoder_only':
            return self.projection(guide, self.norm_y, self.q.weight, self.q.bias)
        # 'cat': q([y, up(x)]) = q_y(y) + up(q_x(x)); projecting x before upsampling is exact.
        weight_y, weight_x = self.q.weight.split([self.guide_channels, self.in_channels], dim=1)
        from_guide = self.projection(guide, self.norm_y, weight_y, self.q.bias)
        from_x = channels_last(lambda t: F.linear(t, weight_x), x)
        return from_guide + nearest_up(from_x, size, self.scale_factor)


@register_upsampler
class SAPAG(_ProjectedSAPA):
    """SAPA-G: gated bilinear similarity (Lu et al., NeurIPS 2022; official ``sapaexp.SAPAExp``
    with ``q_mode='gate'``).

    ``g = nearest-up(sigmoid(gate(LN x)))`` (one channel), query
    ``g * qy(LN y) + (1 - g) * qx(nearest-up(x))`` (``x`` not normalised), key ``k(LN x)``.
    Arguments as :class:`SAPAB` without ``q_mode``; ``qkv_bias`` also covers ``gate``.
    Parameters: ``norm_y``, ``norm_x``, ``qy``, ``qx``, ``gate``, ``k`` (and ``v``).

    Example:
        >>> up = SAPAG(16, embedding_dim=8)
        >>> up(torch.randn(2, 16, 5, 6), torch.randn(2, 16, 10, 12)).shape
        torch.Size([2, 16, 10, 12])
    """

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 guide_channels: Optional[int] = None, up_kernel_size: int = 5,
                 embedding_dim: int = 64, qkv_bias: bool = True, norm: bool = True,
                 v_embed: bool = False, out_channels: Optional[int] = None) -> None:
        super().__init__(in_channels, scale_factor, guide_channels, up_kernel_size,
                         embedding_dim, qkv_bias, norm, v_embed, out_channels)
        self.qy = nn.Linear(self.guide_channels, self.embedding_dim, bias=qkv_bias)
        self.qx = nn.Linear(self.in_channels, self.embedding_dim, bias=qkv_bias)
        self.gate = nn.Linear(self.in_channels, 1, bias=qkv_bias)
        self.reset_parameters()

    def query_and_key(self, guide, x, size):
        # Key and gate are both projections of LN x: one fused projection, no normalised x.
        weight = torch.cat([self.k.weight, self.gate.weight])
        bias = torch.cat([self.k.bias, self.gate.bias]) if self.qkv_bias else None
        key, gate = self.projection(x, self.norm_x, weight, bias).split(
            [self.embedding_dim, 1], dim=1)
        gate = nearest_up(torch.sigmoid(gate), size, self.scale_factor)
        # qx(up(x)) = up(qx(x)) exactly (pointwise layer): project at low resolution.
        from_x = nearest_up(channels_last(self.qx, x), size, self.scale_factor)
        # g * qy + (1 - g) * from_x as one lerp: no full-resolution products to keep.
        query = torch.lerp(from_x, self.projection(guide, self.norm_y, self.qy.weight,
                                                   self.qy.bias), gate)
        return query, key


@register_upsampler
class SAPABase(Upsampler):
    """Journal SAPA-B (official ``sapa_base.SAPA`` in tiny-smart/sapa; the ``'sapa'`` upsampler
    of the authors' segmentation and detection forks).

    Query ``q(GN y)`` and key ``k(GN x)`` are 1x1 convolutions (GroupNorm with 32 groups when
    ``norm``); each high-resolution pixel attends to the k x k window of keys around its parent
    (zero padding, softmax over the window) and reassembles the raw ``x``.

    Args:
        in_channels: channels C of ``x`` (official ``dim_x``).
        scale_factor: integer s >= 2 (official ``up_factor``; ``scale_factor`` in the forks).
        guide_channels: channels of the guide ``y`` (official ``dim_y``; default ``in_channels``).
        up_kernel_size: odd window size k (5).
        embedding_dim: channels of queries and keys (32).
        qkv_bias: bias in the ``q`` and ``k`` convolutions (True).
        norm: GroupNorm(32) on both inputs (True); needs both channel counts divisible by 32.

    Shapes: ``x`` (B, C, H, W), ``guide`` (B, guide_channels, oH, oW) -> (B, C, oH, oW).
    Parameters: ``norm_y``, ``norm_x`` (GroupNorm, when ``norm``), ``q``, ``k`` (Conv2d 1x1).

    Example:
        >>> up = SAPABase(32, scale_factor=3, up_kernel_size=3)
        >>> up(torch.randn(2, 32, 4, 5), torch.randn(2, 32, 12, 15)).shape
        torch.Size([2, 32, 12, 15])
    """

    requires_guide = True

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 guide_channels: Optional[int] = None, up_kernel_size: int = 5,
                 embedding_dim: int = 32, qkv_bias: bool = True, norm: bool = True) -> None:
        super().__init__(in_channels, scale_factor, guide_channels)
        self.up_kernel_size = check_odd_kernel('up_kernel_size', up_kernel_size)
        self.embedding_dim = check_positive_int('embedding_dim', embedding_dim)
        self.qkv_bias = check_bool('qkv_bias', qkv_bias)
        self.norm = check_bool('norm', norm)
        if norm:
            self.norm_x = group_norm_32('in_channels', self.in_channels)
            self.norm_y = group_norm_32('guide_channels', self.guide_channels)
        else:
            self.norm_y = self.norm_x = None
        self.q = nn.Conv2d(self.guide_channels, self.embedding_dim, 1, bias=qkv_bias)
        self.k = nn.Conv2d(self.in_channels, self.embedding_dim, 1, bias=qkv_bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The authors' init: normal (std 0.02) conv weights, zero biases, GroupNorm 1 / 0."""
        for conv in (self.q, self.k):
            nn.init.normal_(conv.weight, std=0.02)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        if self.norm:
            for group_norm in (self.norm_y, self.norm_x):
                group_norm.reset_parameters()

    def extra_repr(self) -> str:
        return (f'{super().extra_repr()}, up_kernel_size={self.up_kernel_size}, '
                f'embedding_dim={self.embedding_dim}, norm={self.norm}')

    def upsample(self, x: Tensor, guide: Tensor, size: Tuple[int, int]) -> Tensor:
        x_normed = self.norm_x(x) if self.norm else x
        return local_attention(guide_query(guide, self.norm_y, self.q), self.k(x_normed), x,
                               self.up_kernel_size, self.scale_factor)


def guide_query(guide: Tensor, norm: Optional[nn.GroupNorm], projection: nn.Conv2d) -> Tensor:
    """``projection(norm(guide))`` of the journal code (1x1 conv after GroupNorm, or no norm),
    without a normalised copy of the full-resolution guide
    (:func:`~mmdynup.ops.normalized_projection.group_norm_projection`)."""
    if norm is None:
        return projection(guide)
    return group_norm_projection(guide, norm.num_groups, norm.weight, norm.bias, norm.eps,
                                 projection.weight, projection.bias)
