"""Predictions shown moving: an animated GIF of input, target and prediction side by side, one row
per test sequence, with a frame counter; written with Pillow, the same bytes for the same arrays.

GIF frame t (1-10) shows input frame t beside target and predicted frame 10 + t, so the clip plays
the ten frames the model saw next to the ten it had to guess.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from simvp_core.atomic import atomic_file

FRAMES = 10  # input frames, and frames predicted
SCALE = 2  # each 64x64 frame drawn at 128x128 pixels, nearest neighbour
GAP = 6  # white pixels between panels
LABEL_PIXELS = 18  # the column labels above, the counter below
FONT_SIZE = 12
FRAME_MS = 300
LAST_FRAME_MS = 1200  # the last frame held, so the loop's restart is visible
INPUT_LABEL, TARGET_LABEL = "input 1-10", "target 11-20"


def columns_of(arrays: dict[str, np.ndarray], predictions: list[tuple[str, np.ndarray]] | None = None,
               sequences: int | None = None) -> list[tuple[str, np.ndarray]]:
    """The GIF's columns from a predictions file's arrays (inputs, targets, preds): input, target,
    then `predictions` ((label, preds) pairs; default: the file's own), the first `sequences` rows."""
    rows = slice(None, sequences)
    preds = predictions if predictions is not None else [("prediction 11-20", arrays["preds"])]
    return [(INPUT_LABEL, arrays["inputs"][rows]), (TARGET_LABEL, arrays["targets"][rows]),
            *((label, p[rows]) for label, p in preds)]


def frames(columns: list[tuple[str, np.ndarray]], scale: int = SCALE) -> list[Image.Image]:
    """The GIF's frames: `columns` are (label, array (n, 10, 1, H, W) in [0, 1]), the same n and
    size each; the first column is the input, shown at frame t, the others at frame 10 + t."""
    shapes = {a.shape for _, a in columns}
    if len(shapes) != 1 or len(next(iter(shapes))) != 5 or next(iter(shapes))[1] != FRAMES:
        raise ValueError(f"expected arrays of one shape (n, {FRAMES}, 1, H, W), got {sorted(shapes)}")
    n, _, _, h, w = next(iter(shapes))
    cell_w, cell_h = w * scale, h * scale
    width = len(columns) * cell_w + (len(columns) + 1) * GAP
    height = LABEL_PIXELS + n * cell_h + (n + 1) * GAP + LABEL_PIXELS
    font = ImageFont.load_default(size=FONT_SIZE)
    pixels = [np.clip(np.asarray(a, dtype=np.float32)[:, :, 0] * 255 + 0.5, 0, 255).astype(np.uint8)
              for _, a in columns]
    out = []
    for t in range(FRAMES):
        image = Image.new("L", (width, height), 255)
        draw = ImageDraw.Draw(image)
        for c, (label, _) in enumerate(columns):
            x = GAP + c * (cell_w + GAP)
            draw.text((x + cell_w / 2, LABEL_PIXELS / 2), label, fill=0, font=font, anchor="mm")
            for r in range(n):
                frame = Image.fromarray(pixels[c][r, t]).resize((cell_w, cell_h), Image.Resampling.NEAREST)
                image.paste(frame, (x, LABEL_PIXELS + GAP + r * (cell_h + GAP)))
        draw.text((width / 2, height - LABEL_PIXELS / 2), f"frame {t + 1} / {FRAMES}", fill=0, font=font,
                  anchor="mm")
        out.append(image)
    return out


def write_gif(columns: list[tuple[str, np.ndarray]], path: str | Path, scale: int = SCALE) -> Path:
    """Write `frames(columns)` as a GIF that loops for ever, atomically; returns the path."""
    images = frames(columns, scale)
    path = Path(path)
    with atomic_file(path) as f:
        images[0].save(f, format="GIF", save_all=True, append_images=images[1:], loop=0,
                       duration=[FRAME_MS] * (FRAMES - 1) + [LAST_FRAME_MS])
    return path


__all__ = ["columns_of", "frames", "write_gif", "FRAMES"]
