"""MIRL pretraining model: a masked ViT encoder cut into 2K segments, 2K cross-attention decoders.

MIRL (Huang et al., "Masked Image Residual Learning for Scaling Deeper Vision Transformers",
NeurIPS 2023, Sec. 3, Fig. 2). The encoder sees the visible 25 % of the patches (MAE masking).
Its blocks form 2K consecutive segments; segment j's output, read from the residual stream, is
normalised by its own LayerNorm (``norm0`` ... ``norm{2K-2}``, the last one ``norm``), and the
token sequence before the first block by ``norm_low`` (the "low-level feature"). Decoder k embeds
segment k's feature, fills the masked positions with its own mask token, adds a fixed sin-cos
position table and runs ``CrossBlock``s whose memory is the shallower decoders' visible
embeddings plus a shared projection (``decoder_embed0_1``) of the low-level feature. Decoders i
and 2K-1-i form a pair whose *summed* prediction regresses the per-patch normalised pixels of the
masked patches (:mod:`.objective`).

Parameter and buffer names are the official PaddlePaddle ones (``models_mirl.MIRLViT``), so an
official checkpoint loads once its Linear weights are transposed
(:mod:`mmdynup.converters.mirl`). Frozen tensors (sin-cos tables, prediction gains) are buffers.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.model import BaseModel
from torch import Tensor, nn

from ..registry import MODELS
from ..checks import check_divisible, check_positive_int
from .layers import Block, CrossBlock, InputNormalizedLinear, PatchEmbed
from .objective import (Masking, gather_tokens, normalized_pixel_target, paired_residual_loss,
                        random_masking, residual_pairs)
from .position import sincos_position_embedding_2d


def equal_segment_ends(num_layers: int, num_segments: int) -> List[int]:
    """Last block index of every segment but the final one, for equal segments:
    48 blocks in 6 segments -> [7, 15, 23, 31, 39]; 54 in 6 -> [8, 17, 26, 35, 44]."""
    check_divisible('num_layers', num_layers, num_segments, 'num_segments')
    length = num_layers // num_segments
    return [length * (j + 1) - 1 for j in range(num_segments - 1)]


@MODELS.register_module()
class MIRLPretrainer(BaseModel):
    """Masked image residual learning (MIRL) pretraining of a plain ViT.

    Args:
        img_size: square input size; inputs must have exactly this size (fixed tables).
        patch_size: p.
        in_channels: image channels.
        embed_dims, num_layers, num_heads, mlp_ratio: encoder width D, depth, heads, MLP ratio.
        num_segments: 2K, an even number >= 2 (default 6, as the released models). With
            ``out_indices`` given it may be left out and must otherwise agree.
        out_indices: the last block of every segment except the final one (the official
            ``out_indices``), strictly increasing, below ``num_layers - 1``. Default: equal
            segments, ``num_layers`` divisible by ``num_segments``.
        decoder_embed_dims, decoder_depth, decoder_num_heads: width d, blocks and heads of each
            of the 2K decoders (one width for all: the memory concatenates their embeddings).
        decoder_mlp_ratio: MLP ratio of the decoder blocks (default ``mlp_ratio``, as official).
        mask_ratio: fraction of masked patches (0.75).
        use_memory: cross-attend to the memory (MIRL). False gives the plain MAE-decoder
            ablation: self-attention ``Block``s, no ``norm_low`` / ``decoder_embed0_1``.
        weight_norm_pred: prediction layers weight-normalised per input feature with the gain
            frozen at 1 (official ``weight_norm_pred=True``); False gives plain Linear layers.
        norm_eps: LayerNorm epsilon (1e-6).
        data_preprocessor: mmengine data preprocessor config (normalisation of the images).
        init_cfg: mmengine init config; the MAE initialisation is applied in the constructor.

    Shapes: images (N, C, img_size, img_size); L = (img_size / p)^2 patches; predictions
    (N, L, p*p*C).

    Example:
        >>> model = MIRLPretrainer(img_size=32, patch_size=8, embed_dims=32, num_layers=6,
        ...                        num_heads=4, decoder_embed_dims=16, decoder_depth=1,
        ...                        decoder_num_heads=2)
        >>> out = model.forward_with_noise(torch.randn(2, 3, 32, 32), torch.rand(2, 16))
        >>> len(out['preds']), tuple(out['preds'][0].shape), len(out['pair_losses'])
        (6, (2, 16, 192), 3)
    """

    def __init__(self,
                 img_size: int = 224,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 embed_dims: int = 768,
                 num_layers: int = 48,
                 num_heads: int = 12,
                 mlp_ratio: float = 4.0,
                 num_segments: Optional[int] = None,
                 out_indices: Optional[Sequence[int]] = None,
                 decoder_embed_dims: int = 512,
                 decoder_depth: int = 2,
                 decoder_num_heads: int = 16,
                 decoder_mlp_ratio: Optional[float] = None,
                 mask_ratio: float = 0.75,
                 use_memory: bool = True,
                 weight_norm_pred: bool = True,
                 norm_eps: float = 1e-6,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.img_size = check_positive_int('img_size', img_size)
        self.patch_size = check_positive_int('patch_size', patch_size)
        check_divisible('img_size', img_size, patch_size, 'patch_size')
        num_layers = check_positive_int('num_layers', num_layers)
        decoder_depth = check_positive_int('decoder_depth', decoder_depth)
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f'mask_ratio must be in [0, 1), got {mask_ratio!r}')
        self.out_indices = self._check_out_indices(out_indices, num_layers, num_segments)
        self.num_segments = len(self.out_indices) + 1
        self.mask_ratio = float(mask_ratio)
        self.use_memory = bool(use_memory)
        self.grid_size = img_size // patch_size
        self.num_patches = self.grid_size ** 2
        decoder_mlp_ratio = mlp_ratio if decoder_mlp_ratio is None else decoder_mlp_ratio

        # Encoder.
        self.patch_embed = PatchEmbed(patch_size, in_channels, embed_dims)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.register_buffer('pos_embed', sincos_position_embedding_2d(
            embed_dims, self.grid_size)[None])
        self.blocks = nn.ModuleList(
            Block(embed_dims, num_heads, mlp_ratio, norm_eps) for _ in range(num_layers))
        if self.use_memory:
            self.norm_low = nn.LayerNorm(embed_dims, eps=norm_eps)
        for name in self._segment_norm_names():
            self.add_module(name, nn.LayerNorm(embed_dims, eps=norm_eps))

        # Decoders, one per segment, official names ``decoder_*{k}`` / ``mask_token{k}``.
        decoder_block = CrossBlock if self.use_memory else Block
        pred_dims = patch_size ** 2 * in_channels
        if self.use_memory:
            self.decoder_embed0_1 = nn.Linear(embed_dims, decoder_embed_dims)
        for k in range(self.num_segments):
            self.add_module(f'decoder_embed{k}', nn.Linear(embed_dims, decoder_embed_dims))
            self.register_parameter(f'mask_token{k}',
                                    nn.Parameter(torch.zeros(1, 1, decoder_embed_dims)))
            self.register_buffer(f'decoder_pos_embed{k}', sincos_position_embedding_2d(
                decoder_embed_dims, self.grid_size)[None])
            self.add_module(f'decoder_blocks{k}', nn.ModuleList(
                decoder_block(decoder_embed_dims, decoder_num_heads, decoder_mlp_ratio, norm_eps)
                for _ in range(decoder_depth)))
            self.add_module(f'decoder_norm{k}', nn.LayerNorm(decoder_embed_dims, eps=norm_eps))
            self.add_module(f'decoder_pred{k}',
                            InputNormalizedLinear(decoder_embed_dims, pred_dims)
                            if weight_norm_pred else nn.Linear(decoder_embed_dims, pred_dims))
        self._init_mae_weights()

    @staticmethod
    def _check_out_indices(out_indices, num_layers: int,
                           num_segments: Optional[int]) -> List[int]:
        if out_indices is None:
            num_segments = 6 if num_segments is None else num_segments
            check_positive_int('num_segments', num_segments, minimum=2)
            if num_segments % 2:
                raise ValueError(f'num_segments must be even (segments pair up shallow with '
                                 f'deep), got {num_segments}')
            return equal_segment_ends(num_layers, num_segments)
        out_indices = [int(index) for index in out_indices]
        valid = (all(0 <= i < num_layers - 1 for i in out_indices)
                 and all(a < b for a, b in zip(out_indices, out_indices[1:])))
        if not valid:
            raise ValueError(f'out_indices must be strictly increasing block indices below '
                             f'num_layers - 1 = {num_layers - 1} (the final segment ends at the '
                             f'last block), got {out_indices}')
        if len(out_indices) % 2 == 0:
            raise ValueError(f'out_indices must list an odd number of segment ends (2K - 1 for '
                             f'2K segments), got {len(out_indices)}: {out_indices}')
        if num_segments is not None and num_segments != len(out_indices) + 1:
            raise ValueError(f'num_segments={num_segments} disagrees with out_indices '
                             f'{out_indices} ({len(out_indices) + 1} segments)')
        return out_indices

    def _segment_norm_names(self) -> List[str]:
        """``norm0`` ... ``norm{2K-2}`` for the inner segments, ``norm`` for the last."""
        return [f'norm{j}' for j in range(self.num_segments - 1)] + ['norm']

    def _init_mae_weights(self) -> None:
        """MAE initialisation (as official): Xavier-uniform Linear weights (the patch conv as a
        flat Linear), zero biases, N(0, 0.02) cls / mask tokens, LayerNorm 1 / 0."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, InputNormalizedLinear):
                nn.init.xavier_uniform_(module.weight_v)
                nn.init.zeros_(module.bias)
                module.weight_g.fill_(1.0)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        projection = self.patch_embed.proj
        nn.init.xavier_uniform_(projection.weight.view(projection.weight.shape[0], -1))
        nn.init.zeros_(projection.bias)
        nn.init.normal_(self.cls_token, std=0.02)
        for k in range(self.num_segments):
            nn.init.normal_(getattr(self, f'mask_token{k}'), std=0.02)

    # ------------------------------------------------------------------ encoder
    def forward_encoder(self, images: Tensor, masking: Masking) -> Dict[str, object]:
        """Encode the visible patches.

        Args:
            images: (N, C, H, W) normalised images.
            masking: from :func:`~.objective.random_masking`.

        Returns:
            ``low_level``: ``norm_low`` of the pre-block sequence (N, 1+n_v, D), or None without
            memory; ``features``: the 2K segment outputs after their LayerNorms (N, 1+n_v, D),
            shallow to deep. Tokens are cls first, then the visible patches in ``ids_keep`` order.
        """
        tokens = self.patch_embed(images) + self.pos_embed[:, 1:]
        tokens = gather_tokens(tokens, masking.ids_keep)
        cls_token = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls_token, tokens], dim=1)
        low_level = self.norm_low(x) if self.use_memory else None
        segment_outputs = []
        ends = set(self.out_indices)
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in ends:
                segment_outputs.append(x)
        segment_outputs.append(x)
        features = [getattr(self, name)(output)
                    for name, output in zip(self._segment_norm_names(), segment_outputs)]
        return dict(low_level=low_level, features=features)

    # ------------------------------------------------------------------ decoders
    def _decoder_queries(self, k: int, embedded: Tensor, ids_restore: Tensor) -> Tensor:
        """(N, 1+n_v, d) visible embeddings -> (N, 1+L, d): mask tokens in the masked slots,
        patches back in raster order, cls row first, plus the decoder's position table."""
        batch, length = embedded.shape[0], ids_restore.shape[1]
        mask_tokens = getattr(self, f'mask_token{k}').expand(
            batch, length + 1 - embedded.shape[1], -1)
        patches = gather_tokens(torch.cat([embedded[:, 1:], mask_tokens], dim=1), ids_restore)
        queries = torch.cat([embedded[:, :1], patches], dim=1)
        return queries + getattr(self, f'decoder_pos_embed{k}')

    def forward_decoders(self, low_level: Optional[Tensor], features: Sequence[Tensor],
                         ids_restore: Tensor) -> List[Tensor]:
        """The 2K predictions (N, L, p*p*C), shallow to deep (cls row dropped)."""
        shared_low = self.decoder_embed0_1(low_level) if self.use_memory else None
        visible_embeddings: List[Tensor] = []
        preds = []
        for k, feature in enumerate(features):
            embedded = getattr(self, f'decoder_embed{k}')(feature)
            # Memory: shallower decoders' visible embeddings, nearest first, then the low level.
            memory = (torch.cat(visible_embeddings[::-1] + [shared_low], dim=1)
                      if self.use_memory else None)
            visible_embeddings.append(embedded)
            x = self._decoder_queries(k, embedded, ids_restore)
            for block in getattr(self, f'decoder_blocks{k}'):
                x = block(x, memory)
            x = getattr(self, f'decoder_norm{k}')(x)
            preds.append(getattr(self, f'decoder_pred{k}')(x)[:, 1:])
        return preds

    # ------------------------------------------------------------------ full model
    def forward_with_noise(self, images: Tensor, noise: Tensor,
                           mask_ratio: Optional[float] = None) -> Dict[str, object]:
        """The full pretraining forward with the masking fixed by ``noise`` (N, L) (smallest
        values kept, as official ``random_masking`` with ``paddle.rand`` returning ``noise``).

        Returns:
            dict with ``loss`` (0-d), ``pair_losses`` (K 0-d tensors, pairs (0, 2K-1), (1, 2K-2),
            ...), ``preds`` (2K tensors (N, L, p*p*C), shallow to deep), ``target`` (N, L, p*p*C),
            ``mask`` (N, L; 1 = masked).
        """
        self._check_images(images)
        expected = (images.shape[0], self.num_patches)
        if tuple(noise.shape) != expected:
            raise ValueError(f'noise must have shape (N, L) = {expected}, '
                             f'got {tuple(noise.shape)}')
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        masking = random_masking(noise, ratio)
        encoded = self.forward_encoder(images, masking)
        preds = self.forward_decoders(encoded['low_level'], encoded['features'],
                                      masking.ids_restore)
        target = normalized_pixel_target(images, self.patch_size)
        loss, pair_losses = paired_residual_loss(preds, target, masking.mask)
        return dict(loss=loss, pair_losses=pair_losses, preds=preds, target=target,
                    mask=masking.mask)

    def forward(self, inputs: Tensor, data_samples=None, mode: str = 'tensor'):
        """mmengine entry point. ``mode='loss'``: ``dict(loss=..., pair_0_5=..., ...)`` (only
        ``loss`` is optimised; the pair values are logged); ``mode='tensor'``: the dict of
        :meth:`forward_with_noise` with fresh uniform noise."""
        if mode not in ('loss', 'tensor'):
            raise ValueError(f"mode must be 'loss' or 'tensor' (pretraining has no "
                             f"predictions to post-process), got {mode!r}")
        noise = torch.rand(inputs.shape[0], self.num_patches, device=inputs.device)
        outputs = self.forward_with_noise(inputs, noise)
        if mode == 'tensor':
            return outputs
        losses = dict(loss=outputs['loss'])
        for (shallow, deep), value in zip(residual_pairs(self.num_segments),
                                          outputs['pair_losses']):
            losses[f'pair_{shallow}_{deep}'] = value.detach()
        return losses

    def _check_images(self, images: Tensor) -> None:
        if not isinstance(images, Tensor) or images.dim() != 4:
            raise ValueError(f'images must be a (N, C, H, W) tensor, got '
                             f'{getattr(images, "shape", type(images).__name__)}')
        size = (self.img_size, self.img_size)
        if tuple(images.shape[-2:]) != size:
            raise ValueError(f'images must be {size[0]}x{size[1]} (img_size; the position tables '
                             f'are fixed), got {tuple(images.shape[-2:])}')

    def encoder_state_dict(self) -> Dict[str, Tensor]:
        """The encoder's tensors only (``patch_embed``, ``cls_token``, ``pos_embed``, ``blocks``,
        segment norms), under the official names; what fine-tuning keeps."""
        decoder_prefixes = ('decoder_', 'mask_token', 'norm_low')
        return {name: tensor for name, tensor in self.state_dict().items()
                if not name.startswith(decoder_prefixes)}

    @property
    def segment_ends(self) -> List[int]:
        """Last block index of every segment, the final block included."""
        return self.out_indices + [len(self.blocks) - 1]
