"""ScaleInvariantLogLoss: the BTS form against the formula written out, mmseg's form against
mmseg's SiLogLoss, the depth toolbox's variance form, masking and gradients."""
import pytest
import torch

pytest.importorskip('mmseg')

from mmseg.models.losses import SiLogLoss  # noqa: E402

from mmdynup.depth import ScaleInvariantLogLoss  # noqa: E402

TOLERANCE = dict(atol=1e-10, rtol=1e-8)


def _depths(batch=3, height=7, width=9, seed=0):
    generator = torch.Generator().manual_seed(seed)
    target = torch.rand(batch, 1, height, width, generator=generator, dtype=torch.float64) * 9.5
    target[target < 0.5] = 0  # invalid pixels (holes, padding)
    pred = torch.rand(batch, 1, height, width, generator=generator, dtype=torch.float64) * 9 + 0.2
    return pred, target


def test_bts_form_pools_the_batch_with_lambda_085_and_factor_10():
    pred, target = _depths()
    valid = target > 0.1
    d = torch.log(pred[valid]) - torch.log(target[valid])
    expected = torch.sqrt((d ** 2).mean() - 0.85 * d.mean() ** 2) * 10
    torch.testing.assert_close(ScaleInvariantLogLoss()(pred, target), expected, **TOLERANCE)


def test_toolbox_variance_form_is_the_same_loss():
    pred, target = _depths()
    d = torch.log(pred[target > 0.1]) - torch.log(target[target > 0.1])
    toolbox = torch.sqrt(d.var(unbiased=False) + 0.15 * d.mean() ** 2)
    torch.testing.assert_close(ScaleInvariantLogLoss(scale=1.0)(pred, target), toolbox,
                               **TOLERANCE)


def test_mmseg_form_equals_mmseg_silog_loss():
    pred, target = _depths()
    ours = ScaleInvariantLogLoss(variance_focus=0.5, scale=1.0, min_depth=1e-6, per_image=True)
    torch.testing.assert_close(ours(pred, target), SiLogLoss()(pred, target), **TOLERANCE)


def test_per_image_and_batch_forms_differ():
    pred, target = _depths()
    batch = ScaleInvariantLogLoss(variance_focus=0.5, scale=1.0)(pred, target)
    image = ScaleInvariantLogLoss(variance_focus=0.5, scale=1.0, per_image=True)(pred, target)
    assert not torch.allclose(batch, image)


def test_invalid_pixels_get_no_gradient_and_no_nan():
    pred, target = _depths()
    pred[target == 0] = 0.0  # log(0) at invalid pixels must not leak into the gradient
    pred.requires_grad_(True)
    loss = ScaleInvariantLogLoss()(pred, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
    assert (pred.grad[target == 0] == 0).all() and (pred.grad[target > 0.1] != 0).any()


def test_no_valid_pixel_gives_zero_with_a_gradient_path():
    pred = torch.rand(2, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    for per_image in (False, True):
        loss = ScaleInvariantLogLoss(per_image=per_image)(pred, torch.zeros_like(pred))
        loss.backward()
        assert loss.item() == 0.0 and torch.isfinite(pred.grad).all()


@pytest.mark.parametrize('kwargs, match', [
    (dict(variance_focus=1.5), 'variance_focus'),
    (dict(min_depth=-1.0), 'min_depth'),
    (dict(loss_name='silog'), 'loss_name'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ScaleInvariantLogLoss(**kwargs)


def test_shape_mismatch_and_weight_are_refused():
    loss = ScaleInvariantLogLoss()
    with pytest.raises(ValueError, match='resize the prediction'):
        loss(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 8, 8))
    with pytest.raises(ValueError, match='per-pixel weight'):
        loss(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 4, 4), weight=torch.ones(1, 1, 4, 4))
