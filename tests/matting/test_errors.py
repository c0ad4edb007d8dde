"""composition_errors against hand-computed values of the Deep Image Matting MATLAB definitions:
SAD, MSE, Grad (derivative-of-Gaussian filters, sigma 1.4) and Conn (thresholds 0.1 .. 1,
4-connectivity, the 0.15 rule)."""
import math

import numpy as np
import pytest

from mmdynup.matting import composition_errors
from mmdynup.matting.errors import gaussian_derivative_filters, largest_component

UNKNOWN = 128


def unknown_trimap(shape):
    return np.full(shape, UNKNOWN, np.uint8)


def test_sad_and_mse_count_only_the_unknown_region():
    gt = np.array([[0.0, 0.5], [1.0, 0.25]])
    pred = np.array([[0.3, 0.75], [0.6, 0.75]])  # wrong at the known pixels too
    trimap = np.array([[0, 128], [255, 128]], np.uint8)
    errors = composition_errors(pred, gt, trimap)
    assert errors['SAD'] == pytest.approx((0.25 + 0.5) / 1000)
    assert errors['MSE'] == pytest.approx((0.25 ** 2 + 0.5 ** 2) / 2)


def test_no_unknown_pixel_gives_zero_errors():
    gt = np.array([[0.0, 1.0]])
    errors = composition_errors(np.array([[0.4, 0.4]]), gt, np.array([[0, 255]], np.uint8))
    assert errors == {'SAD': 0.0, 'MSE': 0.0, 'Grad': 0.0, 'Conn': 0.0}


def test_gradient_filters_are_gaussgradient_m():
    hx, hy = gaussian_derivative_filters(1.4)
    assert hx.shape == (9, 9)  # halfsize = ceil(1.4 sqrt(-2 ln(sqrt(2 pi) 1.4 0.01))) = 4
    assert np.sum(hx ** 2) == pytest.approx(1.0)
    np.testing.assert_array_equal(hy, hx.T)
    np.testing.assert_allclose(hx[:, ::-1], -hx)  # derivative along x: odd in the column
    np.testing.assert_allclose(hx[::-1, :], hx)  # Gaussian along y: even in the row


def _gauss(u, sigma=1.4):
    return math.exp(-u * u / (2 * sigma * sigma)) / (sigma * math.sqrt(2 * math.pi))


def test_grad_of_a_step_edge_against_a_constant_prediction():
    """A vertical 0 -> 1 edge: gy = 0 and gx(x) = sum_i G(i) * sum_j G'(j) step(x - j) / norm;
    a constant prediction normalises to zeros (gradient 0). Replicated borders extend the
    step exactly."""
    height, width, edge = 9, 20, 10
    gt = np.zeros((height, width))
    gt[:, edge:] = 1
    offsets = range(-4, 5)
    gauss = [_gauss(u) for u in offsets]
    derivative = [-u * _gauss(u) / 1.4 ** 2 for u in offsets]
    norm = math.sqrt(sum(g * g for g in gauss) * sum(d * d for d in derivative))
    expected = 0.0
    for x in range(width):
        gx = sum(gauss) * sum(d for d, j in zip(derivative, offsets) if x - j >= edge) / norm
        expected += height * gx ** 2
    errors = composition_errors(np.full((height, width), 0.5), gt, unknown_trimap(gt.shape))
    assert errors['Grad'] == pytest.approx(expected / 1000, rel=1e-5)


def test_grad_normalises_the_mattes_first():
    gt = np.random.default_rng(0).uniform(0, 1, (12, 12))
    scaled = 0.2 + 0.5 * gt  # the same matte after mat2gray
    errors = composition_errors(scaled, gt, unknown_trimap(gt.shape))
    assert errors['Grad'] == pytest.approx(0.0, abs=1e-12)
    assert errors['SAD'] > 0


def test_conn_levels_and_the_015_rule():
    """pred [0.5, 0.5], gt [0.5, 0.3]: both pixels connected up to t = 0.3, the second leaves at
    0.4 (level 0.3), the first never (level 1). phi: pred 1 - 0.2 (d = 0.2 >= 0.15), gt 1 (d = 0).
    """
    errors = composition_errors(np.array([[0.5, 0.5]]), np.array([[0.5, 0.3]]),
                                unknown_trimap((1, 2)))
    assert errors['Conn'] == pytest.approx(0.2 / 1000, rel=1e-5)
    # gt 0.4: the second pixel's level is 0.4, d(pred) = 0.1 < 0.15 counts as connected.
    errors = composition_errors(np.array([[0.5, 0.5]]), np.array([[0.5, 0.4]]),
                                unknown_trimap((1, 2)))
    assert errors['Conn'] == 0.0 and errors['SAD'] == pytest.approx(0.1 / 1000)


def test_conn_uses_4_connectivity():
    """pred [[1, 0], [0, 0.7]], gt [[1, 1], [1, 0.6]]: the diagonal pair is two 4-connected
    components, so (1, 1) leaves the largest one (the tie goes to (0, 0)) at t = 0.1: level 0,
    phi 1 - 0.7 against 1 - 0.6, error 0.1. (With 8-connectivity it would stay until t = 0.7,
    level 0.6, d = 0.1 < 0.15 and 0 error.) The two zeros of pred have level 0: phi(pred) 1
    against phi(gt) 1 - 1 = 0, error 1 each. Total 2.1."""
    pred = np.array([[1.0, 0.0], [0.0, 0.7]])
    gt = np.array([[1.0, 1.0], [1.0, 0.6]])
    errors = composition_errors(pred, gt, unknown_trimap((2, 2)))
    assert errors['Conn'] == pytest.approx(2.1 / 1000, rel=1e-5)


def test_largest_component_breaks_ties_in_column_major_order():
    mask = np.array([[False, True], [True, False]])  # (0, 1) first by rows, (1, 0) by columns
    np.testing.assert_array_equal(largest_component(mask), [[False, False], [True, False]])
    assert not largest_component(np.zeros((2, 2), bool)).any()


def test_known_regions_are_restored_before_grad_and_conn():
    gt = np.array([[0.0, 0.0, 0.5, 1.0, 1.0]])
    trimap = np.array([[0, 0, 128, 255, 255]], np.uint8)
    noisy = np.array([[0.7, 0.2, 0.5, 0.1, 0.9]])  # right in the unknown pixel only
    assert composition_errors(noisy, gt, trimap) == composition_errors(gt, gt, trimap)
    assert composition_errors(noisy, gt, trimap)['Grad'] == 0.0


@pytest.mark.parametrize('pred, gt, trimap, error, match', [
    (np.zeros((2, 2)), np.zeros((2, 2)), np.full((2, 2), 100, np.uint8), ValueError,
     'trimap has values 100 besides 0 / 128 / 255'),
    (np.full((2, 2), 1.5), np.zeros((2, 2)), np.zeros((2, 2), np.uint8), ValueError,
     r'pred_alpha has values in \[1.5, 1.5\], outside \[0, 1\]'),
    (np.zeros((2, 2)), np.full((2, 2), -0.1), np.zeros((2, 2), np.uint8), ValueError,
     'gt_alpha has values'),
    (np.zeros((2, 2)), np.zeros((2, 3)), np.zeros((2, 2), np.uint8), ValueError,
     r'pred_alpha has shape \(2, 2\) but gt_alpha has shape \(2, 3\)'),
    (np.zeros((2, 2)), np.zeros((2, 2, 3)), np.zeros((2, 2), np.uint8), ValueError,
     r'gt_alpha has shape \(2, 2, 3\): a 3-channel image'),
    (np.zeros((2, 2), np.uint8), np.zeros((2, 2)), np.zeros((2, 2), np.uint8), TypeError,
     'pred_alpha has dtype uint8; pass a float matte'),
    (np.full((2, 2), np.nan), np.zeros((2, 2)), np.zeros((2, 2), np.uint8), ValueError,
     'pred_alpha holds NaN'),
])
def test_bad_inputs_name_the_argument(pred, gt, trimap, error, match):
    with pytest.raises(error, match=match):
        composition_errors(pred, gt, trimap)


def test_the_metric_averages_the_errors_of_8_bit_predictions():
    pytest.importorskip('mmseg')
    import torch

    from mmdynup.matting import CompositionErrors
    rng = np.random.default_rng(0)
    metric = CompositionErrors()
    samples, expected = [], []
    for _ in range(2):
        gt = np.round(rng.uniform(0, 1, (6, 7)) * 255) / 255
        pred = rng.uniform(0, 1, (6, 7))
        trimap = rng.choice(np.array([0, 128, 255], np.uint8), size=(6, 7))
        samples.append(dict(pred_alpha=torch.from_numpy(pred)[None],
                            gt_alpha=torch.from_numpy(gt)[None],
                            trimap=torch.from_numpy(trimap)[None]))
        expected.append(composition_errors(np.round(pred * 255) / 255, gt, trimap))
    metric.process(None, samples)
    averaged = metric.compute_metrics(metric.results)
    for name in ('SAD', 'MSE', 'Grad', 'Conn'):
        assert averaged[name] == pytest.approx((expected[0][name] + expected[1][name]) / 2)


def test_separable_gradient_is_the_2d_convolution_with_replicated_borders():
    from scipy import ndimage

    from mmdynup.matting.errors import gradient_magnitude, normalise_min_max
    matte = np.random.default_rng(1).uniform(0, 1, (13, 17))
    hx, hy = gaussian_derivative_filters(1.4)
    normalised = normalise_min_max(matte)
    expected = np.hypot(ndimage.convolve(normalised, hx, mode='nearest'),
                        ndimage.convolve(normalised, hy, mode='nearest'))
    np.testing.assert_allclose(gradient_magnitude(matte), expected, rtol=0, atol=1e-12)
