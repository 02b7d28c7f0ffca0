import math

import pytest
import torch
import torch.nn.functional as F

from simvp_core.losses import ddr_loss, gdl_loss, total_loss

SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0


def sobel(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hand Sobel on (N, C, H, W): replicate border, kernels divided by their abs sum (8)."""
    n, c, h, w = frames.shape
    padded = F.pad(frames.reshape(n * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(padded, SOBEL_X.to(frames)[None, None]).reshape(n, c, h, w)
    gy = F.conv2d(padded, SOBEL_X.T.to(frames)[None, None]).reshape(n, c, h, w)
    return gx, gy


def gdl_reference(pred: torch.Tensor, target: torch.Tensor) -> float:
    gx_p, gy_p = sobel(pred.double().flatten(0, 1))
    gx_t, gy_t = sobel(target.double().flatten(0, 1))
    per_pixel = (gx_t.abs() - gx_p.abs()) ** 2 + (gy_t.abs() - gy_p.abs()) ** 2
    return per_pixel.mean().item()


def ddr_reference(pred: torch.Tensor, target: torch.Tensor, tau: float) -> float:
    """Per (sample, frame pair) KL with an explicit softmax in float64, averaged over all elements."""
    eps = 1e-12
    pred, target = pred.double(), target.double()
    total, count = 0.0, 0
    for b in range(pred.shape[0]):
        for t in range(pred.shape[1] - 1):
            dp = (pred[b, t + 1] - pred[b, t]).flatten() / tau
            dt = (target[b, t + 1] - target[b, t]).flatten() / tau
            p = torch.exp(dp - dp.max())
            p = p / p.sum()
            q = torch.exp(dt - dt.max())
            q = q / q.sum()
            total += (p * torch.log(p / (q + eps) + eps)).sum().item()
            count += dp.numel()
    return total / count


def pair(shape=(2, 4, 1, 12, 12), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g), torch.rand(shape, generator=g)


def test_hand_sobel_is_the_slope_on_a_ramp():
    # guards the reference itself: normalized Sobel of a linear ramp is its slope away from the border
    ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    gx, gy = sobel((0.3 * xs - 0.2 * ys)[None, None])
    assert torch.allclose(gx[..., 1:-1, 1:-1], torch.tensor(0.3), atol=1e-6)
    assert torch.allclose(gy[..., 1:-1, 1:-1], torch.tensor(-0.2), atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 4, 1, 12, 12), (1, 3, 2, 9, 7)])
def test_gdl_matches_hand_sobel(shape):
    pred, target = pair(shape)
    assert gdl_loss(pred, target).item() == pytest.approx(gdl_reference(pred, target), rel=1e-5)


def test_gdl_zero_for_equal_positive_otherwise_and_differentiable():
    pred, target = pair()
    assert gdl_loss(target, target).item() == 0.0
    pred.requires_grad_(True)
    loss = gdl_loss(pred, target)
    assert loss.item() > 0
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_gdl_bf16_inputs_give_float32():
    pred, target = pair()
    pred16, target16 = pred.bfloat16(), target.bfloat16()
    loss = gdl_loss(pred16, target16)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(gdl_reference(pred16.float(), target16.float()), rel=1e-5)


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_ddr_matches_hand_loop(tau):
    pred, target = pair((2, 4, 1, 8, 8), seed=1)
    expected = ddr_reference(pred, target, tau)
    assert expected > 0
    assert ddr_loss(pred, target, tau).item() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("frames", [1, 2])
def test_ddr_zero_for_two_or_fewer_frames(frames):
    pred, target = pair((2, frames, 1, 8, 8))
    loss = ddr_loss(pred, target)
    assert loss.shape == () and loss.dtype == torch.float32 and loss.item() == 0.0


def test_ddr_nonnegative_zero_for_equal_and_differentiable():
    pred, target = pair((3, 5, 1, 8, 8), seed=3)
    assert abs(ddr_loss(target, target).item()) < 1e-7
    pred.requires_grad_(True)
    loss = ddr_loss(pred, target)
    assert loss.item() > 0
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_ddr_bf16_inputs_give_float32():
    pred, target = pair((2, 4, 1, 8, 8), seed=4)
    pred16, target16 = pred.bfloat16(), target.bfloat16()
    loss = ddr_loss(pred16, target16)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(ddr_reference(pred16.float(), target16.float(), 0.1), rel=1e-4)


def test_bad_inputs_raise():
    pred, target = pair()
    with pytest.raises(ValueError, match="tau"):
        ddr_loss(pred, target, tau=0.0)
    with pytest.raises(ValueError, match="same shape"):
        gdl_loss(pred, target[:, :2])
    with pytest.raises(ValueError, match="same shape"):
        ddr_loss(pred[0], target[0])


def test_total_loss_is_the_weighted_sum():
    pred, target = pair((2, 4, 1, 12, 12), seed=5)
    pred.requires_grad_(True)
    loss, parts = total_loss(pred, target, lambda_gdl=0.7, lambda_ddr=3.0, tau=0.2)
    mse = ((pred - target) ** 2).mean().item()
    gdl = gdl_reference(pred.detach(), target)
    ddr = ddr_reference(pred.detach(), target, 0.2)
    assert parts["mse"].item() == pytest.approx(mse, rel=1e-6)
    assert parts["gdl"].item() == pytest.approx(gdl, rel=1e-5)
    assert parts["ddr"].item() == pytest.approx(ddr, rel=1e-4)
    assert loss.item() == pytest.approx(mse + 0.7 * gdl + 3.0 * ddr, rel=1e-5)
    assert not any(v.requires_grad for v in parts.values())
    loss.backward()
    assert torch.isfinite(pred.grad).all()


def test_total_loss_with_zero_lambdas_is_mse():
    pred, target = pair(seed=6)
    loss, parts = total_loss(pred, target)
    assert set(parts) == {"mse", "gdl", "ddr"}
    assert loss.item() == pytest.approx(F.mse_loss(pred, target).item(), rel=1e-7)
    assert parts["gdl"].item() == 0.0 and parts["ddr"].item() == 0.0
    assert math.isclose(parts["mse"].item(), loss.item())
