"""Test metrics with OpenSTL's conventions, which the paper's published numbers use.

Frames are (N, T, C, H, W) on the 0-1 scale. MSE and MAE are per-frame sums over C*H*W averaged
over frames, on the raw predictions; SSIM and PSNR are per-frame values averaged over frames, on
predictions clipped to [0, 1]. Everything runs batched in torch on the inputs' device.
"""

from __future__ import annotations

import torch
from torch import Tensor

KEYS = ("mse", "mae", "ssim", "psnr")
SSIM_WIN = 7
SSIM_K1, SSIM_K2 = 0.01, 0.03
# A perfect frame would have PSNR = inf; its error is floored here, capping PSNR at 100 dB.
MIN_FRAME_MSE = 1e-10
# evaluate() feeds the accumulator this many sequences at a time to bound memory.
EVAL_CHUNK = 100


def _check_frames(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 5:
        raise ValueError(
            f"pred and target must both be (N, T, C, H, W) of the same shape; "
            f"got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if min(pred.shape[-2:]) < SSIM_WIN:
        raise ValueError(f"frames must be at least {SSIM_WIN}x{SSIM_WIN} for SSIM; got {tuple(pred.shape[-2:])}")
    if not (pred.is_floating_point() and target.is_floating_point()):
        raise ValueError(f"frames must be float tensors on the 0-1 scale; got {pred.dtype} and {target.dtype}")


def _window_means(x: Tensor) -> Tensor:
    """Mean over every 7x7 window lying inside the frame: (..., H, W) -> (..., H-6, W-6).

    Separable sums over unfolded views: several times faster on CPU than avg_pool2d or conv2d.
    """
    rows = x.unfold(-1, SSIM_WIN, 1).sum(dim=-1)
    return rows.unfold(-2, SSIM_WIN, 1).sum(dim=-1) / SSIM_WIN**2


def ssim_frames(pred: Tensor, target: Tensor, data_range: float = 2.0) -> Tensor:
    """SSIM of every frame, shape (N*T,), as skimage's structural_similarity computes it.

    That is: 7x7 uniform window, K1=0.01, K2=0.03, sample covariance (49/48), the SSIM map
    averaged over the pixels at least 3 from the border (and over channels). Those pixels' windows
    lie inside the frame, so valid (unpadded) 7x7 window means give exactly that map. No clipping here.
    """
    _check_frames(pred, target)
    if data_range <= 0:
        raise ValueError(f"data_range must be > 0 (2.0 as published, 1.0 textbook); got {data_range!r}")
    x = pred.detach().flatten(0, 1).float()
    y = target.detach().flatten(0, 1).float()
    stats = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    ux, uy, uxx, uyy, uxy = _window_means(stats).chunk(5, dim=1)
    cov_norm = SSIM_WIN**2 / (SSIM_WIN**2 - 1)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    ssim_map = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return ssim_map.mean(dim=(1, 2, 3))


class MetricAccumulator:
    """Sums per-frame metrics over batches on the inputs' device; compute() syncs once at the end."""

    def __init__(self, ssim_data_range: float = 2.0) -> None:
        if ssim_data_range <= 0:
            raise ValueError(f"ssim_data_range must be > 0 (2.0 as published, 1.0 textbook); got {ssim_data_range!r}")
        self.ssim_data_range = ssim_data_range
        self.frames = 0
        self._sums: Tensor | None = None  # float64 sums over frames, in KEYS order

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add one batch of (N, T, C, H, W) predictions and targets."""
        _check_frames(pred, target)
        pred, target = pred.detach().float(), target.detach().float()
        err = pred - target
        clipped = pred.clamp(0.0, 1.0)
        frame_mse = (clipped - target).square().flatten(2).mean(dim=-1)
        per_frame = (
            err.square().flatten(2).sum(dim=-1),
            err.abs().flatten(2).sum(dim=-1),
            ssim_frames(clipped, target, self.ssim_data_range),
            -10.0 * torch.log10(frame_mse.clamp_min(MIN_FRAME_MSE)),
        )
        sums = torch.stack([v.double().sum() for v in per_frame])
        self._sums = sums if self._sums is None else self._sums + sums
        self.frames += pred.shape[0] * pred.shape[1]

    def compute(self) -> dict[str, float]:
        """Frame-weighted means over everything added: {"mse", "mae", "ssim", "psnr"}."""
        if self._sums is None:
            raise ValueError("no frames to evaluate; call update(pred, target) first")
        return dict(zip(KEYS, (self._sums / self.frames).tolist()))


def evaluate(pred: Tensor, target: Tensor, ssim_data_range: float = 2.0) -> dict[str, float]:
    """{"mse", "mae", "ssim", "psnr"} of (N, T, C, H, W) predictions against targets."""
    _check_frames(pred, target)
    acc = MetricAccumulator(ssim_data_range)
    for start in range(0, pred.shape[0], EVAL_CHUNK):
        acc.update(pred[start:start + EVAL_CHUNK], target[start:start + EVAL_CHUNK])
    return acc.compute()


__all__ = ["KEYS", "MIN_FRAME_MSE", "ssim_frames", "MetricAccumulator", "evaluate"]
