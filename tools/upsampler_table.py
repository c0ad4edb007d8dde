"""Print the README's upsampler table: every registered upsampler, its paper, whether it needs a
guide, and its parameters at C = 256, s = 2 (guide with 256 channels).

    python tools/upsampler_table.py
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmdynup  # noqa: E402

PAPERS = {
    'NearestUpsample': 'nearest-neighbour interpolation',
    'BilinearUpsample': 'bilinear interpolation',
    'DeconvUpsample': 'transposed convolution',
    'PixelShuffleUpsample': 'sub-pixel convolution (Shi et al., CVPR 2016)',
    'CARAFE': 'CARAFE (Wang et al., ICCV 2019)',
    'FADE': 'FADE (Lu et al., ECCV 2022 / IJCV 2024), semi-shift form',
    'FADELite': 'FADE-Lite (Lu et al., IJCV 2024)',
    'SemiShiftUp': 'FADE without gating (Lu et al., IJCV 2024)',
    'FADEECCV': "FADE, ECCV 2022 form (authors' `FADE_H2L`; = `FADE`, conference init, s = 2)",
    'SAPAI': 'SAPA-I (Lu et al., NeurIPS 2022)',
    'SAPAB': 'SAPA-B (Lu et al., NeurIPS 2022)',
    'SAPAG': 'SAPA-G (Lu et al., NeurIPS 2022)',
    'SAPABase': 'SAPA-B, journal version ("On Point Affiliation in Feature Upsampling")',
    'SAPADeform': 'SAPA-deform, journal version',
    'DySample': 'DySample (Liu et al., ICCV 2023), lp, static scope',
    'DySamplePlus': 'DySample+ (lp, dynamic scope)',
    'DySampleS': 'DySample-S (pl, static scope)',
    'DySampleSPlus': 'DySample-S+ (pl, dynamic scope)',
    'IndexNet': 'IndexNet (Lu et al., ICCV 2019), depthwise m2o index; upstream licence: '
                'non-commercial (academic use only), code here written anew',
    'A2U': 'A2U (Dai et al., CVPR 2021); upstream licence: MIT',
    'LDAAQU': 'LDA-AQU (Du et al., ACM MM 2024), any real scale; upstream licence: Apache-2.0 '
              '(mmdetection fork), code here written anew',
    'FreqFusion': 'FreqFusion (Chen et al., TPAMI 2024), defaults (no resampler), also enhances '
                  'the finer level it merges into; upstream licence: none declared, code here '
                  'written anew',
    'FRFU': 'FRFU (2025; RRFU in its experiments), gated offsets, 4 groups, 3 x 3 filter; '
            'upstream licence: none declared for the operator, code here written anew',
}


def main():
    print('| type | operator | guided | params (C=256, s=2) |')
    print('|---|---|---|---|')
    for name in mmdynup.list_upsamplers():
        module = mmdynup.build_upsampler(dict(type=name, in_channels=256, scale_factor=2,
                                              guide_channels=256))
        parameters = sum(p.numel() for p in module.parameters())
        guided = 'yes' if module.requires_guide else 'no'
        print(f'| `{name}` | {PAPERS.get(name, "")} | {guided} | {parameters:,} |')


if __name__ == '__main__':
    main()
