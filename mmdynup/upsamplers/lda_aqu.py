"""LDA-AQU: adaptive query-guided upsampling by local deformable attention (Du et al., ACM MM 2024;
code: duzw9311/LDA-AQU ``mmdet/models/necks/fpn_lau.py``, class ``LDA_AQU``).

Unguided, any real scale s >= 1 (1.5, 2, 3, ...). From x (B, C, H, W) the full output is
(B, C, oH, oW) with ``oH = int(H * s)``, ``oW = int(W * s)``:

1. **Queries and keys**: a channel LayerNorm of x, then two bias-free 1x1 convs to
   ``D = C / reduction_factor`` channels; the queries are bilinearly resized to (oH, oW) with
   ``align_corners=True``. Values are the raw x.
2. **Offsets** per offset group (G contiguous chunks of the D query channels share one branch):
   depthwise 3x3 conv (no bias), channel LayerNorm, exact GELU, a ``k_e x k_e`` conv to
   ``2 k_u^2`` channels (point-major ``(row, column)`` of the k_u x k_u grid, then the component:
   0 vertical, 1 horizontal). Offset = ``tanh(.) * range_factor`` + the fixed grid
   ``(-pad..pad)^2``, in *output* pixels.
3. **Positions**: output pixel (i, j) and point p read the low-resolution maps at
   ``((i + dy) (H - 1) / (oH - 1), (j + dx) (W - 1) / (oW - 1))`` (input pixel indices, the
   ``align_corners=True`` mapping of the authors' ``grid_sample``; a ratio with ``oH = 1`` is 0),
   bilinear, zero outside. The base grid is thus about 1/s input pixels wide.
4. **Attention** (:func:`~mmdynup.ops.deformable_attention.local_deformable_attention`): heads
   split the D key and the C value channels independently of the groups; an optional learned
   bias (heads, k_u^2, D / heads) is added to the sampled keys; logits ``(D / heads)^-0.5 q . k``,
   softmax over the k_u^2 points, output the weighted sum of the sampled values.

**Host sizes.** The sampling grid is always that of the full ``int(H * s) x int(W * s)`` output
(normalised by its ``(oH - 1, oW - 1)``): ``size`` keeps its top-left window, so pixel (i, j) of a
sized call equals pixel (i, j) of the full one. This is what the authors' neck (``FPN_LAU``) does
when a finer level is smaller than twice the coarser one (``slice_as``). Only the kept pixels
are attended; the offset branch runs on the full query map, so the window's border offsets see
their true neighbours. Sizes larger than the full output are refused.

**Init** (the authors' ``init_weights``, which their ``FPN_LAU`` neck calls and their
constructor does not; ours calls it, so a module built by any host starts as the authors' runs
did): xavier-uniform conv weights with zero bias, LayerNorm weight 1 and bias 0, zero weight and
bias on the last offset conv (points start exactly on the grid), the key bias
truncated-normal(std 0.02). In an FPN keep it with ``upsampler_init='own'``: a neck-wide Xavier
would re-draw the zeroed offset conv.
"""
from __future__ import annotations

from typing import ClassVar, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.deformable_attention import local_deformable_attention
from ..ops.point_sampling import bilinear_resize
from ..registry import register_upsampler
from .base import Upsampler, check_positive_int, crop_to
from .sapa import channels_last, check_bool

#: Standard deviation of the truncated-normal key bias (the authors' ``trunc_normal_(std=.02)``).
KEY_BIAS_STD = 0.02


def sampling_ratio(size: int, out_size: int) -> float:
    """Input pixels per output pixel of the ``align_corners=True`` mapping (0 for one pixel)."""
    return (size - 1) / (out_size - 1) if out_size > 1 else 0.0


@register_upsampler
class LDAAQU(Upsampler):
    """LDA-AQU (ACM MM 2024), unguided: ``forward(x) -> (B, C, int(H * s), int(W * s))``.

    Args:
        in_channels: C of ``x``; divisible by ``reduction_factor * num_heads``, by
            ``reduction_factor * offset_groups`` and by ``offset_groups``.
        scale_factor: s, any real number >= 1 (fractional ones such as 1.5 included).
        guide_channels: ignored (unguided); accepted so that one config fits every upsampler.
        reduction_factor: D = C / reduction_factor query/key channels (official
            ``reduction_factor``).
        num_heads: attention heads (official ``nh``).
        encoder_kernel: k_e, kernel of the last offset conv (official ``k_e``).
        up_kernel: k_u, the k_u x k_u grid of points per output pixel (official ``k_u``; odd).
        offset_groups: G groups sharing the offset branch (official ``n_groups``).
        offset_range: tanh bound of the offsets in output pixels (official ``range_factor``).
        key_bias: learned per-point bias on the sampled keys (official ``rpb``).

    Example:
        >>> up = LDAAQU(64, scale_factor=1.5)
        >>> up(torch.randn(2, 64, 7, 10)).shape
        torch.Size([2, 64, 10, 15])
    """

    requires_guide: ClassVar[bool] = False
    minimum_scale_factor: ClassVar[int] = 1
    fractional_scale: ClassVar[bool] = True

    def __init__(self, in_channels: int, scale_factor: Union[int, float] = 2,
                 guide_channels: Optional[int] = None, reduction_factor: int = 4,
                 num_heads: int = 1, encoder_kernel: int = 3, up_kernel: int = 3,
                 offset_groups: int = 2, offset_range: float = 11.0,
                 key_bias: bool = True) -> None:
        super().__init__(in_channels, scale_factor, guide_channels)
        self.reduction_factor = check_positive_int('reduction_factor', reduction_factor)
        self.num_heads = check_positive_int('num_heads', num_heads)
        self.encoder_kernel = check_positive_int('encoder_kernel', encoder_kernel)
        self.up_kernel = check_positive_int('up_kernel', up_kernel)
        self.offset_groups = check_positive_int('offset_groups', offset_groups)
        self.key_bias = check_bool('key_bias', key_bias)
        for name, value in (('up_kernel', self.up_kernel), ('encoder_kernel',
                                                             self.encoder_kernel)):
            if value % 2 == 0:
                raise ValueError(f'{name} must be odd (its grid / conv is centred on the output '
                                 f'pixel), got {value}; use {value - 1} or {value + 1}')
        if isinstance(offset_range, bool) or not isinstance(offset_range, (int, float)) \
                or not offset_range >= 0:
            raise ValueError(f'offset_range must be a number >= 0 (output pixels), got '
                             f'{offset_range!r}')
        self.offset_range = float(offset_range)
        channels = self.in_channels
        for divisor, what in ((self.reduction_factor * self.num_heads,
                               'reduction_factor * num_heads'),
                              (self.reduction_factor * self.offset_groups,
                               'reduction_factor * offset_groups'),
                              (self.offset_groups, 'offset_groups')):
            if channels % divisor:
                raise ValueError(f'in_channels={channels} must be divisible by {what}={divisor} '
                                 f'(reduction_factor={self.reduction_factor}, num_heads='
                                 f'{self.num_heads}, offset_groups={self.offset_groups})')
        self.hidden_channels = channels // self.reduction_factor
        group_channels = self.hidden_channels // self.offset_groups
        points = self.up_kernel ** 2
        self.norm = nn.LayerNorm(channels)
        self.query = nn.Conv2d(channels, self.hidden_channels, 1, bias=False)
        self.key = nn.Conv2d(channels, self.hidden_channels, 1, bias=False)
        self.offset_depthwise = nn.Conv2d(group_channels, group_channels, 3, padding=1,
                                          groups=group_channels, bias=False)
        self.offset_norm = nn.LayerNorm(group_channels)
        self.offset_project = nn.Conv2d(group_channels, 2 * points, self.encoder_kernel,
                                        padding=self.encoder_kernel // 2)
        if self.key_bias:
            # The official table's layout (1, heads, 1, points, D / heads), so checkpoints load.
            self.relative_position_bias = nn.Parameter(torch.empty(
                1, self.num_heads, 1, points, self.hidden_channels // self.num_heads))
        else:
            self.register_parameter('relative_position_bias', None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The authors' ``init_weights`` plus their constructor's key-bias draw (module
        docstring)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.zeros_(self.offset_project.weight)
        nn.init.zeros_(self.offset_project.bias)
        if self.relative_position_bias is not None:
            nn.init.trunc_normal_(self.relative_position_bias, std=KEY_BIAS_STD, a=-2.0, b=2.0)

    def _apply(self, fn, recurse=True):
        # Module.to(memory_format=torch.channels_last) gives every 4-D and 5-D tensor that format
        # and channels_last has no 5-D form, so the official 5-D key-bias table would make it
        # raise: the table (and its gradient) is converted as its 3-D view instead.
        table = self.relative_position_bias
        if table is None:
            return super()._apply(fn, recurse)
        shape = table.shape

        def convert(tensor: Tensor) -> Tensor:
            if tensor.shape == shape:
                return fn(tensor.flatten(0, 2)).view(shape)
            return fn(tensor)

        return super()._apply(convert, recurse)

    def extra_repr(self) -> str:
        return (f'{super().extra_repr()}, reduction_factor={self.reduction_factor}, '
                f'num_heads={self.num_heads}, encoder_kernel={self.encoder_kernel}, '
                f'up_kernel={self.up_kernel}, offset_groups={self.offset_groups}, '
                f'offset_range={self.offset_range}, key_bias={self.key_bias}')

    def point_grid(self, dtype: torch.dtype, device) -> Tensor:
        """The fixed k_u x k_u grid (P, 2) of ``(row, column)`` shifts, point p = row-major."""
        radius = self.up_kernel // 2
        steps = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
        rows, cols = torch.meshgrid(steps, steps, indexing='ij')
        return torch.stack([rows, cols], dim=-1).reshape(-1, 2)

    def offsets(self, query: Tensor) -> Tensor:
        """Step 2 on the full-size queries (B, D, oH, oW): (B, G, P, 2, oH, oW) ``(row, col)``
        shifts in output pixels, grid included."""
        batch, _, out_h, out_w = query.shape
        groups, points = self.offset_groups, self.up_kernel ** 2
        hidden = self.offset_depthwise(query.reshape(batch * groups, -1, out_h, out_w))
        hidden = F.gelu(channels_last(self.offset_norm, hidden))
        predicted = self.offset_project(hidden).view(batch, groups, points, 2, out_h, out_w)
        grid = self.point_grid(predicted.dtype, predicted.device).view(points, 2, 1, 1)
        return predicted.tanh() * self.offset_range + grid

    def sample_positions(self, offsets: Tensor, input_size: Tuple[int, int],
                         full_size: Tuple[int, int]) -> Tensor:
        """Step 3: offsets (B, G, P, 2, oh, ow) of the kept window -> positions (B, G, P, oh, ow,
        2) ``(x, y)`` in input pixels with centres at ``k + 0.5`` (the point-sampling
        convention), in at least float32."""
        out_h, out_w = offsets.shape[-2:]
        dtype = torch.promote_types(offsets.dtype, torch.float32)
        offsets = offsets.to(dtype)
        rows = torch.arange(out_h, dtype=dtype, device=offsets.device).view(out_h, 1)
        cols = torch.arange(out_w, dtype=dtype, device=offsets.device).view(1, out_w)
        y = (rows + offsets[:, :, :, 0]) * sampling_ratio(input_size[0], full_size[0]) + 0.5
        x = (cols + offsets[:, :, :, 1]) * sampling_ratio(input_size[1], full_size[1]) + 0.5
        return torch.stack([x, y], dim=-1)

    def upsample(self, x: Tensor, guide: Optional[Tensor], size: Tuple[int, int]) -> Tensor:
        full = self.full_size(*x.shape[-2:])
        normed = channels_last(self.norm, x)
        query = bilinear_resize(self.query(normed), full, align_corners=True)
        offsets = crop_to(self.offsets(query), size)
        positions = self.sample_positions(offsets, tuple(x.shape[-2:]), full)
        key_bias = None
        if self.relative_position_bias is not None:
            key_bias = self.relative_position_bias.view(self.num_heads, self.up_kernel ** 2, -1)
        scale = (self.hidden_channels // self.num_heads) ** -0.5
        return local_deformable_attention(crop_to(query, size), self.key(normed), x, positions,
                                          self.num_heads, scale, key_bias)
