"""Training losses of the paper (section 4): MSE + lambda_gdl * GDL + lambda_ddr * DDR.

All three take predicted and true frames shaped (B, T', C, H, W). GDL and DDR are computed in
float32 whatever the input dtype (bf16 autocast included): both square or exponentiate small
differences, where bf16's 8-bit mantissa loses most of the signal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.filters import spatial_gradient
from torch import Tensor

_EPS = 1e-12


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 5:
        raise ValueError(
            f"pred and target must both be (B, T, C, H, W) of the same shape; "
            f"got {tuple(pred.shape)} and {tuple(target.shape)}"
        )


def gdl_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Gradient difference loss: how far the Sobel gradient magnitudes of pred are from target's.

    Per pixel the term is (|gx_true| - |gx_pred|)^2 + (|gy_true| - |gy_pred|)^2 (kornia's
    normalized first-order Sobel, replicate border); the loss is its mean over all (B*T', C, H, W)
    pixels, i.e. twice the mean over the stacked (B*T', C, 2, H, W) squared differences.
    """
    _check_pair(pred, target)
    with torch.autocast(pred.device.type, enabled=False):
        grad_pred, grad_true = (
            spatial_gradient(x.flatten(0, 1).float(), mode="sobel", order=1, normalized=True).abs()
            for x in (pred, target)
        )
        return (grad_true - grad_pred).square().sum(dim=2).mean()


def ddr_loss(pred: Tensor, target: Tensor, tau: float = 0.1) -> Tensor:
    """TAU's differential divergence regularisation: KL between softmaxed frame differences.

    As the paper's experiments computed it: the KL of each (sample, frame pair) is averaged over
    all B * (T'-1) * C*H*W elements, not summed per pair. Zero (float32) when T' <= 2.
    """
    _check_pair(pred, target)
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau!r}")
    b, t = pred.shape[:2]
    if t <= 2:
        return pred.new_zeros((), dtype=torch.float32)
    with torch.autocast(pred.device.type, enabled=False):
        pred, target = pred.float(), target.float()
        dp = (pred[:, 1:] - pred[:, :-1]).reshape(b, t - 1, -1)
        dt = (target[:, 1:] - target[:, :-1]).reshape(b, t - 1, -1)
        p = torch.softmax(dp / tau, dim=-1)
        q = torch.softmax(dt / tau, dim=-1)
        return (p * torch.log(p / (q + _EPS) + _EPS)).mean()


def total_loss(
    pred: Tensor,
    target: Tensor,
    lambda_gdl: float = 0.0,
    lambda_ddr: float = 0.0,
    tau: float = 0.1,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The training loss and its unweighted terms {"mse", "gdl", "ddr"} (detached scalars).

    A term whose lambda is 0 is not computed (saves time) and reported as 0, its contribution,
    so loss == mse + lambda_gdl * gdl + lambda_ddr * ddr holds for the reported terms.
    """
    mse = F.mse_loss(pred, target)
    zero = mse.new_zeros(())
    gdl = gdl_loss(pred, target) if lambda_gdl else zero
    ddr = ddr_loss(pred, target, tau) if lambda_ddr else zero
    loss = mse + lambda_gdl * gdl + lambda_ddr * ddr
    return loss, {"mse": mse.detach(), "gdl": gdl.detach(), "ddr": ddr.detach()}


__all__ = ["gdl_loss", "ddr_loss", "total_loss"]
