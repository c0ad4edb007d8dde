"""The toy study behind tools/demo.py: metrics checked by hand (and SSIM against scikit-image),
the decoder's information flow (no skips: only guided operators see the finer encoder features),
every snippet of `--all` in the toy decoder."""
import numpy as np
import pytest
import torch
from mmengine.config import Config

from mmdynup.toy import (BoundaryIoUMetric, PhotoPatches, ReconstructionMetric, ToyDecoder,
                         ToyEncoder, boundary_band, mean_absolute_error, psnr, ssim,
                         upsampler_parameters)
from tests.tools.conftest import load_tool


def test_psnr_and_mae_by_hand():
    target = torch.zeros(2, 1, 16, 16)
    prediction = torch.full_like(target, 0.1)
    prediction[1] = 0.01
    np.testing.assert_allclose(psnr(prediction, target), [20.0, 40.0], rtol=1e-6)
    np.testing.assert_allclose(mean_absolute_error(prediction, target), [0.1, 0.01], rtol=1e-6)
    assert torch.isinf(psnr(target, target)).all()


def test_ssim_by_hand_and_against_scikit_image():
    ones = torch.ones(1, 1, 16, 16)
    assert ssim(ones * 0.3, ones * 0.3).item() == pytest.approx(1.0)
    # Constant images: no variance, so SSIM is the luminance term alone.
    c1 = 0.01 ** 2
    expected = (2 * 0.5 * 0.25 + c1) / (0.5 ** 2 + 0.25 ** 2 + c1)
    assert ssim(ones * 0.5, ones * 0.25).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match='at least 11 x 11'):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))

    metrics = pytest.importorskip('skimage.metrics')
    rng = np.random.default_rng(0)
    x = rng.random((24, 20))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    reference = metrics.structural_similarity(x, y, data_range=1.0, gaussian_weights=True,
                                              sigma=1.5, use_sample_covariance=False)
    ours = ssim(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None]).item()
    assert ours == pytest.approx(reference, abs=1e-6)


def _segmentation_sample(prediction, truth):
    return dict(pred_sem_seg=dict(data=torch.from_numpy(prediction)[None]),
                gt_sem_seg=dict(data=torch.from_numpy(truth)[None]))


def test_boundary_band_and_boundary_iou_by_hand():
    mask = np.zeros((9, 9), bool)
    mask[2:7, 2:7] = True
    band = boundary_band(mask, 1)
    assert band.sum() == 25 - 9 and not band[4, 4] and band[2, 2]

    truth = mask.astype(np.int64)
    wider = np.zeros((9, 9), np.int64)
    wider[2:7, 2:8] = 1
    # width 4 on a 9 x 9 image: every pixel of both masks is within 4 px of a contour, so
    # boundary IoU is the plain IoU here: background 51 / 56, square 25 / 30.
    metric = BoundaryIoUMetric(num_classes=3, width=4)
    metric.process(None, [_segmentation_sample(wider, truth)])
    expected = 100 * np.mean([51 / 56, 25 / 30])  # class 2 occurs nowhere: not averaged
    assert metric.compute_metrics(metric.results)['bIoU'] == pytest.approx(expected)

    perfect = BoundaryIoUMetric(num_classes=2, width=1)
    perfect.process(None, [_segmentation_sample(truth, truth)])
    assert perfect.compute_metrics(perfect.results)['bIoU'] == 100


def test_reconstruction_metric_averages_per_image():
    metric = ReconstructionMetric()
    target = torch.zeros(2, 1, 16, 16)
    prediction = torch.stack([target[0] + 0.1, target[1] + 0.01])
    metric.process(None, [dict(prediction=p, target=t) for p, t in zip(prediction, target)])
    result = metric.compute_metrics(metric.results)
    assert result['PSNR'] == pytest.approx(30.0, rel=1e-6)
    assert result['MAE'] == pytest.approx(0.055, rel=1e-6)
    assert 0 < result['SSIM'] < 1


@pytest.mark.parametrize('upsample_cfg, sees_finer_features', [
    (dict(type='BilinearUpsample'), False), (dict(type='CARAFE'), False),
    (dict(type='FADE'), True), (dict(type='SAPAB', embedding_dim=8), True)])
def test_decoder_sees_finer_encoder_features_only_through_guided_upsamplers(
        upsample_cfg, sees_finer_features):
    torch.manual_seed(0)
    encoder = ToyEncoder(1, widths=[8, 16, 16]).eval()
    decoder = ToyDecoder([8, 16, 16], upsample_cfg, bottleneck_channels=2).eval()
    features = encoder(torch.rand(2, 1, 16, 12))
    assert [tuple(f.shape) for f in features] == [(2, 8, 16, 12), (2, 16, 8, 6), (2, 16, 4, 3)]
    with torch.no_grad():
        output = decoder(features)
        perturbed = decoder([features[0] + 1, features[1] - 1, features[2]])
    assert output.shape == (2, 8, 16, 12)
    assert torch.equal(output, perturbed) != sees_finer_features
    assert (upsampler_parameters(decoder) == 0) == (upsample_cfg['type'] == 'BilinearUpsample')


def test_encoder_refuses_sizes_it_cannot_halve():
    with pytest.raises(ValueError, match='divisible by 4'):
        ToyEncoder(1, widths=[4, 4, 4])(torch.zeros(1, 1, 10, 12))


def test_photo_patches_hold_out_the_bottom_rows():
    train = PhotoPatches('train', patch_size=32, num_patches=64)
    val = PhotoPatches('val', patch_size=32)
    assert len(train) == 64 and train[0]['inputs'].shape == (1, 32, 32)
    # grace_hopper at 300 x 256 and the MRI slice at 256 x 256: 75 and 64 held-out rows, 2 x 8
    # patches each, less the flat ones (1 of the photo, 7 of the MRI's black background).
    assert len(val) == 32 - 8
    assert float(val.patches.flatten(1).std(1).min()) >= 0.02
    assert 0 <= float(val.patches.min()) and float(val.patches.max()) <= 1
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        PhotoPatches('test')


def test_every_snippet_of_demo_all_runs_in_the_toy_decoder():
    """``tools/demo.py --all`` builds each snippet at the demo's width 32 (A2U and the SAPA base
    need multiples of 32) and runs forward and backward."""
    demo = load_tool('demo.py')
    torch.manual_seed(0)
    encoder = ToyEncoder(1, widths=[32, 32, 32])
    features = encoder(torch.rand(1, 1, 16, 16))
    for name in demo.parse_args(['--all']).upsamplers:
        cfg = Config.fromfile(f'{demo.SNIPPET_DIR}/{name}.py').upsample_cfg
        decoder = ToyDecoder([32, 32, 32], cfg, bottleneck_channels=4)
        output = decoder([feature.detach() for feature in features])
        assert output.shape == (1, 32, 16, 16), name
        output.mean().backward()
