import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from simvp_core import metrics
from simvp_core.metrics import MetricAccumulator, evaluate, ssim_frames


def blobs(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """(n, size, size) frames of a few soft Gaussian spots in [0, 1], like blurred digits."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    out = torch.zeros(n, size, size, dtype=torch.float64)
    for i in range(n):
        for cy, cx, sigma in torch.rand(4, 3, generator=g, dtype=torch.float64).tolist():
            s = 1.5 + 5 * sigma
            out[i] += torch.exp(-((ys - cy * size) ** 2 + (xs - cx * size) ** 2) / (2 * s * s))
    return out.clamp(0, 1)


def skimage_ssim(pred: np.ndarray, target: np.ndarray, data_range: float) -> np.ndarray:
    """Per-frame skimage SSIM of (N, T, C, H, W) arrays, channels averaged."""
    return np.array([
        structural_similarity(p, t, data_range=data_range, win_size=7, gaussian_weights=False,
                              use_sample_covariance=True, channel_axis=0)
        for p, t in zip(pred.reshape(-1, *pred.shape[2:]), target.reshape(-1, *target.shape[2:]))
    ])


def random_pair(shape, seed=0, low=0.0, high=1.0):
    g = torch.Generator().manual_seed(seed)
    pred = low + (high - low) * torch.rand(shape, generator=g, dtype=torch.float64)
    return pred.float(), torch.rand(shape, generator=g).float()


def structured_pair(n: int = 6, seed: int = 0):
    target = blobs(n, seed=seed)
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    pred = (0.8 * target + 0.2 * blobs(n, seed=seed + 2) + 0.03 * noise).clamp(0, 1)
    return pred.reshape(2, n // 2, 1, 64, 64).float(), target.reshape(2, n // 2, 1, 64, 64).float()


@pytest.mark.parametrize("data_range", [2.0, 1.0])
@pytest.mark.parametrize("kind", ["random", "structured", "two_channels"])
def test_ssim_frames_match_skimage(kind, data_range):
    if kind == "random":
        pred, target = random_pair((2, 3, 1, 64, 64))
    elif kind == "structured":
        pred, target = structured_pair()
    else:
        pred, target = structured_pair(n=8)
        pred, target = pred.reshape(2, 2, 2, 64, 64), target.reshape(2, 2, 2, 64, 64)
    expected = skimage_ssim(pred.double().numpy(), target.double().numpy(), data_range)
    got = ssim_frames(pred, target, data_range)
    assert got.shape == (pred.shape[0] * pred.shape[1],)
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=0, atol=1e-4)


def test_ssim_depends_on_data_range_as_skimage_does():
    pred, target = structured_pair()
    wide, narrow = ssim_frames(pred, target, 2.0), ssim_frames(pred, target, 1.0)
    assert (wide > narrow).all()  # larger constants pull SSIM towards 1


def test_mse_mae_are_per_frame_sums_before_clipping():
    pred, target = random_pair((3, 4, 2, 8, 9), seed=1, low=-0.3, high=1.3)
    p, t = pred.double().numpy(), target.double().numpy()
    result = evaluate(pred, target)
    assert result["mse"] == pytest.approx(((p - t) ** 2).sum(axis=(2, 3, 4)).mean(), rel=1e-6)
    assert result["mae"] == pytest.approx(np.abs(p - t).sum(axis=(2, 3, 4)).mean(), rel=1e-6)


def test_psnr_is_per_frame_on_clipped_predictions():
    pred, target = random_pair((3, 4, 2, 8, 9), seed=2, low=-0.3, high=1.3)
    p, t = np.clip(pred.double().numpy(), 0, 1), target.double().numpy()
    frame_mse = ((p - t) ** 2).mean(axis=(2, 3, 4))
    assert evaluate(pred, target)["psnr"] == pytest.approx(np.mean(-10 * np.log10(frame_mse)), rel=1e-5)


def test_ssim_uses_clipped_predictions():
    pred, target = structured_pair()
    pred = pred * 1.6 - 0.3  # well outside [0, 1]
    clipped = pred.clamp(0, 1)
    for data_range in (2.0, 1.0):
        expected = skimage_ssim(clipped.double().numpy(), target.double().numpy(), data_range).mean()
        raw = skimage_ssim(pred.double().numpy(), target.double().numpy(), data_range).mean()
        assert abs(raw - expected) > 1e-3  # the test would notice a missing clip
        got = evaluate(pred, target, ssim_data_range=data_range)["ssim"]
        assert got == pytest.approx(expected, abs=1e-4)


def test_accumulator_over_batches_equals_evaluate_on_all():
    pred, target = random_pair((7, 3, 1, 16, 16), seed=3, low=-0.1, high=1.1)
    acc = MetricAccumulator(ssim_data_range=1.0)
    for start, stop in ((0, 1), (1, 4), (4, 7)):  # unequal batches: results weigh frames, not batches
        acc.update(pred[start:stop], target[start:stop])
    assert acc.frames == 21
    whole = evaluate(pred, target, ssim_data_range=1.0)
    batched = acc.compute()
    assert set(batched) == set(whole) == {"mse", "mae", "ssim", "psnr"}
    for key in whole:
        assert batched[key] == pytest.approx(whole[key], rel=1e-9)


def test_evaluate_chunks_large_inputs_consistently(monkeypatch):
    pred, target = random_pair((5, 2, 1, 8, 8), seed=4)
    single = MetricAccumulator()
    single.update(pred, target)
    monkeypatch.setattr(metrics, "EVAL_CHUNK", 2)
    chunked = evaluate(pred, target)
    for key, value in single.compute().items():
        assert chunked[key] == pytest.approx(value, rel=1e-9)


def test_perfect_prediction():
    _, target = structured_pair()
    result = evaluate(target.clone(), target)
    assert result["mse"] == 0.0 and result["mae"] == 0.0
    assert result["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert math.isfinite(result["psnr"]) and result["psnr"] > 60
    assert all(isinstance(v, float) for v in result.values())


def test_accumulator_accepts_predictions_that_require_grad():
    pred, target = random_pair((2, 2, 1, 8, 8), seed=5)
    pred.requires_grad_(True)
    acc = MetricAccumulator()
    acc.update(pred, target)
    assert acc.compute()["mse"] == pytest.approx(((pred - target) ** 2).sum().item() / 4, rel=1e-6)


def test_bad_inputs_raise():
    pred, target = random_pair((2, 2, 1, 8, 8))
    with pytest.raises(ValueError, match="same shape"):
        evaluate(pred, target[:, :1])
    with pytest.raises(ValueError, match="same shape"):
        evaluate(pred[0], target[0])
    with pytest.raises(ValueError, match="at least 7x7"):
        evaluate(pred[..., :6, :], target[..., :6, :])
    with pytest.raises(ValueError, match="float"):
        evaluate((pred * 255).to(torch.uint8), (target * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="data_range"):
        MetricAccumulator(ssim_data_range=0.0)
    with pytest.raises(ValueError, match="update"):
        MetricAccumulator().compute()
