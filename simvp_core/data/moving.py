"""Moving MNIST sequences generated on the fly, and their augmentation.

Follows section 4 of the reference facts: 20 frames of 64x64, two bouncing 28x28 digits combined
with an element-wise max, inputs frames 0-9 and targets frames 10-19, values / 255.
Everything is vectorised torch on the digits' device; randomness comes only from the
`torch.Generator` passed in, so a seed fixes the data.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from simvp_core.config import AUGMENTATIONS

NUM_FRAMES = 20
INPUT_FRAMES = 10
FRAME_SIZE = 64
STEP = 0.1  # distance moved per frame, in units of the free range [0, 1]
CROP_SCALE = 0.94  # crop augmentation: upscale by 1 / 0.94 (64 -> 68), crop back to 64
FLIP_P = 0.75  # each stage of the flip cascade fires with this probability


def bounce_positions(start: Tensor, velocity: Tensor, num_frames: int = NUM_FRAMES,
                     step: float = STEP) -> Tensor:
    """Positions (..., num_frames, 2) in [0, 1] of points moving from `start` (..., 2).

    The position is stepped before each frame; a coordinate leaving [0, 1] is clamped there and
    its velocity component flips (the Moving MNIST bounce).
    """
    pos, vel = start, velocity
    frames = []
    for _ in range(num_frames):
        pos = pos + vel * step
        out = (pos <= 0) | (pos >= 1)
        vel = torch.where(out, -vel, vel)
        pos = pos.clamp(0.0, 1.0)
        frames.append(pos)
    return torch.stack(frames, dim=-2)


def generate_sequences(digits: Tensor, n: int, generator: torch.Generator,
                       num_frames: int = NUM_FRAMES, size: int = FRAME_SIZE,
                       num_digits: int = 2) -> Tensor:
    """n Moving MNIST sequences, float32 (n, num_frames, 1, size, size) in [0, 1] on digits.device."""
    return to_float(generate_sequences_uint8(digits, n, generator, num_frames, size, num_digits))


def to_float(seqs: Tensor) -> Tensor:
    """uint8 pixels (0-255) to float32 in [0, 1]."""
    return seqs.to(torch.float32).div_(255)


def generate_sequences_uint8(digits: Tensor, n: int, generator: torch.Generator,
                             num_frames: int = NUM_FRAMES, size: int = FRAME_SIZE,
                             num_digits: int = 2) -> Tensor:
    """As generate_sequences, in uint8 pixels: 4x less memory for fixed sets kept whole.

    Random draws, in this order: digit indices (uniform, with replacement), then per digit
    x, y ~ U[0, 1) and theta ~ U[0, 2 pi) (float64). The pixel offset of a digit's top-left
    corner is int((size - 28) * pos), x giving the column and y the row; digits combine by an
    element-wise max.
    """
    _check_digits(digits)
    _check_generator(generator, digits.device)
    if n < 0 or num_frames < 1 or num_digits < 1:
        raise ValueError(f"need n >= 0, num_frames >= 1, num_digits >= 1; got n={n}, "
                         f"num_frames={num_frames}, num_digits={num_digits}")
    h, w = digits.shape[1:]
    if size < max(h, w):
        raise ValueError(f"size must be at least the digit size {h}x{w}; got {size}")
    device = digits.device
    chosen = digits[torch.randint(len(digits), (n, num_digits), generator=generator, device=device)]
    motion = torch.rand(n, num_digits, 3, generator=generator, device=device, dtype=torch.float64)
    theta = motion[..., 2] * (2 * math.pi)
    velocity = torch.stack((torch.cos(theta), torch.sin(theta)), dim=-1)
    pos = bounce_positions(motion[..., :2], velocity, num_frames)  # (n, D, T, (x, y))
    free = torch.tensor([size - w, size - h], dtype=pos.dtype, device=device)  # (x, y) ranges
    xy = (pos * free).long()  # pos >= 0, so this truncation is int()
    corner = (xy[..., 1] * size + xy[..., 0]).transpose(1, 2).contiguous()  # (n, T, D) flat index
    rows = torch.arange(h, device=device)[:, None]
    cols = torch.arange(w, device=device)[None, :]
    pixel = (rows * size + cols).reshape(1, 1, 1, h * w)  # flat offsets inside a placed digit
    index = (corner[..., None] + pixel).reshape(n, num_frames, num_digits * h * w)
    src = chosen.reshape(n, 1, num_digits * h * w).expand(n, num_frames, -1)
    canvas = torch.zeros(n, num_frames, size * size, dtype=torch.uint8, device=device)
    canvas.scatter_reduce_(-1, index, src, "amax")
    return canvas.view(n, num_frames, 1, size, size)


def augment(seqs: Tensor, kind: str, generator: torch.Generator) -> Tensor:
    """Augment (B, T, C, H, W) sequences with one random transform per sequence, shared by its frames.

    crop: bilinear upscale by 1/0.94 then a random HxW crop. flip: with p=3/4 rotate 180 degrees,
    else with p=3/4 flip vertically, else with p=3/4 flip horizontally. crop+flip: crop, then flip.
    Random draws, in this order: crop top and left offsets, then three U[0, 1) per sequence.
    """
    if kind not in AUGMENTATIONS:
        raise ValueError(f"augment kind must be one of {', '.join(AUGMENTATIONS)}; got {kind!r}")
    if seqs.dim() != 5:
        raise ValueError(f"augment expects (B, T, C, H, W) sequences; got shape {tuple(seqs.shape)}")
    if kind == "none":
        return seqs
    _check_generator(generator, seqs.device)
    b, t, c, h, w = seqs.shape
    device = seqs.device
    source = seqs
    rows = torch.arange(h, device=device).expand(b, h)  # source row of each output row
    cols = torch.arange(w, device=device).expand(b, w)
    if "crop" in kind:
        source = F.interpolate(seqs.reshape(b * t, c, h, w), scale_factor=1 / CROP_SCALE,
                               mode="bilinear", align_corners=False)
        source = source.view(b, t, c, *source.shape[-2:])
        top = torch.randint(source.shape[-2] - h + 1, (b, 1), generator=generator, device=device)
        left = torch.randint(source.shape[-1] - w + 1, (b, 1), generator=generator, device=device)
        rows, cols = rows + top, cols + left
    if "flip" in kind:
        flip_rows, flip_cols = _flip_cascade(b, generator, device)
        rows = torch.where(flip_rows[:, None], rows.flip(1), rows)
        cols = torch.where(flip_cols[:, None], cols.flip(1), cols)
    # one gather moves every output pixel from its source pixel, the same for all frames
    index = (rows[:, :, None] * source.shape[-1] + cols[:, None, :]).view(b, 1, h * w)
    out = source.reshape(b, t * c, -1).gather(2, index.expand(b, t * c, h * w))
    return out.view(b, t, c, h, w)


def _flip_cascade(b: int, generator: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor]:
    """Per sequence, whether to flip rows and columns: with p=3/4 both (rotate 180 degrees),
    else with p=3/4 rows only (vertical flip), else with p=3/4 columns only (horizontal flip)."""
    fire = torch.rand(b, 3, generator=generator, device=device) < FLIP_P
    rotate = fire[:, 0]
    vertical = ~rotate & fire[:, 1]
    horizontal = ~rotate & ~vertical & fire[:, 2]
    return rotate | vertical, rotate | horizontal


def split_frames(seqs: Tensor) -> tuple[Tensor, Tensor]:
    """Split (B, 20, ...) sequences into inputs (frames 0-9) and targets (frames 10-19)."""
    if seqs.dim() < 2 or seqs.shape[1] != NUM_FRAMES:
        raise ValueError(f"expected (B, {NUM_FRAMES}, ...) sequences; got shape {tuple(seqs.shape)}")
    return seqs[:, :INPUT_FRAMES], seqs[:, INPUT_FRAMES:]


def _check_digits(digits: Tensor) -> None:
    if digits.dtype != torch.uint8 or digits.dim() != 3 or len(digits) == 0:
        raise ValueError(f"digits must be a non-empty uint8 (N, H, W) tensor; got "
                         f"{digits.dtype} {tuple(digits.shape)}")


def _check_generator(generator: torch.Generator, device: torch.device) -> None:
    if generator.device.type != device.type:
        raise ValueError(f"generator is on {generator.device} but the data is on {device}; "
                         f"create it with torch.Generator(device={str(device)!r})")
