"""Tests for simvp_core.data: MNIST loading, Moving MNIST generation, augmentation, test sets."""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from simvp_core import data
from simvp_core.oneline import short_path


@pytest.fixture(scope="module")
def full_mnist(real_mnist_dir) -> Path:
    if real_mnist_dir is None:
        pytest.skip("needs the full MNIST files (60,000 + 10,000 digits), absent here: set "
                    "SIMVP_DATA_DIR to a folder holding MNIST/raw, or run python -m simvp_core.data fetch")
    return real_mnist_dir


@pytest.fixture(scope="module")
def train_digits() -> torch.Tensor:
    return data.load_mnist("train", data.SAMPLE)


@pytest.fixture(scope="module")
def test_digits() -> torch.Tensor:
    return data.load_mnist("test", data.SAMPLE)


def write_idx(path: Path, images: np.ndarray, magic: int = 0x803, compress: bool = True) -> Path:
    """Write uint8 images (N, 28, 28) as an IDX file, the way the MNIST files are laid out."""
    raw = struct.pack(">IIII", magic, *images.shape) + images.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def md5_of(path: Path) -> dict[str, str]:
    """The md5 table entry that lets load_mnist accept a file written here."""
    return {path.name: hashlib.md5(path.read_bytes()).hexdigest()}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- loading MNIST ----------------------------------------------------------------------------

def test_load_full_mnist_shapes_and_sample_is_its_prefix(full_mnist):
    train = data.load_mnist("train", full_mnist)  # with their official md5s
    test = data.load_mnist("test", full_mnist)
    assert train.shape == (60000, 28, 28) and train.dtype == torch.uint8
    assert test.shape == (10000, 28, 28) and test.dtype == torch.uint8
    assert train.min() == 0 and train.max() == 255
    assert 30 < train.float().mean() < 37  # MNIST's mean intensity is about 33
    assert torch.equal(data.load_mnist("train", "sample"), train[:1000])
    assert torch.equal(data.load_mnist("test", "sample"), test[:500])


def test_sample_is_selected_by_env_var_and_needs_no_folder(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIMVP_DATA_DIR", "sample")
    assert data.load_mnist("test").shape == (500, 28, 28)


def test_load_mnist_reads_gz_and_unpacked_files(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    packed = write_idx(tmp_path / "a" / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz", images)
    unpacked = write_idx(tmp_path / "b" / "MNIST" / "raw" / "t10k-images-idx3-ubyte", images,
                         compress=False)
    md5s = {**md5_of(packed), **md5_of(unpacked)}
    for folder in ("a", "b"):
        loaded = data.load_mnist("test", tmp_path / folder, md5s=md5s)
        assert loaded.dtype == torch.uint8
        np.testing.assert_array_equal(loaded.numpy(), images)


def test_load_mnist_returns_a_fresh_tensor_each_call(tmp_path):
    images = np.full((2, 28, 28), 7, dtype=np.uint8)
    md5s = md5_of(write_idx(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz", images))
    first = data.load_mnist("train", tmp_path, md5s=md5s)
    first.zero_()
    assert (data.load_mnist("train", tmp_path, md5s=md5s) == 7).all()


@pytest.mark.parametrize("name", ["train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"])
def test_a_file_with_the_wrong_md5_is_refused_naming_it_and_both_sums(tmp_path, name):
    images = np.random.default_rng(3).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    path = write_idx(tmp_path / "MNIST" / "raw" / name, images, compress=name.endswith(".gz"))
    with pytest.raises(data.ChecksumError) as info:  # a well-formed IDX file, but not MNIST's
        data.load_mnist("train", tmp_path)
    message = str(info.value)
    assert isinstance(info.value, ValueError) and "\n" not in message
    expected = {**data.MNIST_MD5, **data.UNPACKED_MD5}[name]
    for part in (short_path(path.resolve(), 64), md5_of(path)[name], expected,
                 f"python -m simvp_core.data fetch --data-dir {short_path(tmp_path, 40)}"):
        assert part in message


def test_a_wrong_md5_under_a_deep_path_is_one_short_line_with_the_name_and_both_sums(tmp_path):
    deep = tmp_path.joinpath(*[f"level_{i:02d}_of_a_deeply_nested_data_folder" for i in range(30)])
    name = "train-images-idx3-ubyte.gz"
    images = np.random.default_rng(4).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    path = write_idx(deep / "MNIST" / "raw" / name, images, compress=True)
    with pytest.raises(data.ChecksumError) as info:
        data.load_mnist("train", deep)
    message = str(info.value)
    assert len(str(path)) > 1000 and len(message) < 300 and "\n" not in message, message
    assert message.startswith(str(path.resolve())[:20]) and f"/{name}: md5 {md5_of(path)[name]}, " in message
    assert f"expected {data.MNIST_MD5[name]}" in message and "fetch --data-dir " in message



def test_the_md5_check_is_cached_per_path_and_mtime(tmp_path):
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    path = write_idx(tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz", images)
    md5s = md5_of(path)
    data.load_mnist("test", tmp_path, md5s=md5s)
    misses = data.mnist._md5.cache_info().misses
    data.load_mnist("test", tmp_path, md5s=md5s)
    assert data.mnist._md5.cache_info().misses == misses  # not hashed again
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    data.load_mnist("test", tmp_path, md5s=md5s)
    assert data.mnist._md5.cache_info().misses == misses + 1  # a changed file is hashed again


def test_bad_split_is_rejected():
    with pytest.raises(ValueError, match="train, test"):
        data.load_mnist("validation", "sample")


def test_resolve_data_dir_order(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SIMVP_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.resolve_data_dir() == tmp_path / "xdg" / "simvp-search"  # ./data holds no MNIST
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert data.resolve_data_dir() == Path.home() / ".cache" / "simvp-search"
    for split in ("train", "test"):
        write_idx(tmp_path / "data" / "MNIST" / "raw" / f"{data.mnist._IMAGE_FILES[split]}.gz",
                  np.zeros((1, 28, 28), np.uint8))
    assert data.resolve_data_dir() == Path("data")
    monkeypatch.setenv("SIMVP_DATA_DIR", str(tmp_path / "env"))
    assert data.resolve_data_dir() == tmp_path / "env"
    assert data.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"


def _assert_helpful(message: str, folder: Path) -> None:
    assert "\n" not in message and len(message) <= data.LINE_CHARS, message
    assert str(folder.resolve())[:8] in message and folder.name in message  # cut in the middle
    assert "train-images-idx3-ubyte.gz" in message or "t10k-images-idx3-ubyte.gz" in message
    assert "--data-dir" in message and "SIMVP_DATA_DIR" in message
    assert "python -m simvp_core.data fetch" in message


def test_missing_folder_raises_data_not_found_naming_it_and_the_fix(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(data.DataNotFoundError) as info:
        data.load_mnist("train", missing)
    assert isinstance(info.value, FileNotFoundError)
    _assert_helpful(str(info.value), missing)
    assert "no such folder" in str(info.value) and len(str(info.value)) <= data.LINE_CHARS


def test_data_not_found_under_a_deep_path_is_one_short_line_naming_where_and_the_fix(tmp_path):
    deep = tmp_path.joinpath(*[f"level_{i:02d}_of_a_deeply_nested_data_folder" for i in range(8)])
    deep.mkdir(parents=True)
    with pytest.raises(data.DataNotFoundError) as info:
        data.load_mnist("test", deep)
    message = str(info.value)
    assert len(str(deep)) > 300 and len(message) <= data.LINE_CHARS, message
    assert "/MNIST/raw; fix: " in message and "t10k-images-idx3-ubyte.gz" in message
    _assert_helpful(message, deep)


def test_folder_from_env_var_without_files_is_named(monkeypatch, tmp_path):
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    monkeypatch.setenv("SIMVP_DATA_DIR", str(tmp_path))
    with pytest.raises(data.DataNotFoundError) as info:
        data.load_mnist("test")
    _assert_helpful(str(info.value), tmp_path)
    assert "t10k-images-idx3-ubyte.gz" in str(info.value)


@pytest.mark.parametrize("damage", ["not_gzip", "cut_stream", "short_body", "wrong_magic", "tiny"])
def test_corrupt_file_gives_clear_value_error(tmp_path, damage):
    images = np.random.default_rng(1).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    if damage == "wrong_magic":  # e.g. a labels file under the images name
        write_idx(path, images, magic=0x801)
    else:
        write_idx(path, images)
        packed = path.read_bytes()
        raw = gzip.decompress(packed)
        path.write_bytes({
            "not_gzip": b"this is not gzip data at all" * 10,
            "cut_stream": packed[: len(packed) // 2],
            "short_body": gzip.compress(raw[: 16 + 2 * 784 + 100]),
            "tiny": gzip.compress(raw[:10]),
        }[damage])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz") as info:
        data.load_mnist("train", tmp_path)
    assert "\n" not in str(info.value)


# ---- generating sequences ----------------------------------------------------------------------

def reference_sequences(digits: np.ndarray, n: int, seed: int, num_digits: int = 2,
                        num_frames: int = 20, size: int = 64) -> np.ndarray:
    """Straightforward per-sample rebuild of the Moving MNIST rule, from the documented draws."""
    g = gen(seed)
    chosen = torch.randint(len(digits), (n, num_digits), generator=g).numpy()
    motion = torch.rand(n, num_digits, 3, generator=g, dtype=torch.float64).numpy()
    free = size - 28
    out = np.zeros((n, num_frames, 1, size, size), np.uint8)
    for i in range(n):
        for d in range(num_digits):
            x, y, theta = (float(v) for v in motion[i, d])
            theta *= 2 * math.pi
            vx, vy = math.cos(theta), math.sin(theta)
            for t in range(num_frames):
                x += vx * 0.1
                y += vy * 0.1
                if x <= 0:
                    x, vx = 0.0, -vx
                if x >= 1:
                    x, vx = 1.0, -vx
                if y <= 0:
                    y, vy = 0.0, -vy
                if y >= 1:
                    y, vy = 1.0, -vy
                top, left = int(free * y), int(free * x)
                window = out[i, t, 0, top:top + 28, left:left + 28]
                np.maximum(window, digits[chosen[i, d]], out=window)
    return out.astype(np.float32) / 255


def test_generated_sequences_match_a_per_sample_reimplementation(train_digits):
    got = data.generate_sequences(train_digits, 12, gen(5))
    expected = reference_sequences(train_digits.numpy(), 12, seed=5)
    assert got.shape == (12, 20, 1, 64, 64) and got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy(), expected)


def test_generated_values_are_pixel_levels_in_unit_range(train_digits):
    seqs = data.generate_sequences(train_digits, 8, gen(0))
    assert seqs.min() >= 0 and seqs.max() <= 1 and seqs.max() > 0.9
    levels = seqs * 255
    assert torch.allclose(levels, levels.round(), atol=1e-4)


def test_bounce_positions_clamp_and_flip_by_hand():
    start = torch.tensor([[0.95, 0.5], [0.02, 0.97]], dtype=torch.float64)
    velocity = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    pos = data.bounce_positions(start, velocity, num_frames=3)
    # point 0: 1.05 -> clamp 1.0, flip; then 0.9, 0.8. point 1: x -0.08 -> 0, then 0.1, 0.2;
    # y 1.07 -> 1.0, then 0.9, 0.8
    expected = torch.tensor([[[1.0, 0.5], [0.9, 0.5], [0.8, 0.5]],
                             [[0.0, 1.0], [0.1, 0.9], [0.2, 0.8]]], dtype=torch.float64)
    torch.testing.assert_close(pos, expected)


def test_bounce_positions_match_a_python_loop_on_random_starts():
    g = gen(3)
    start = torch.rand(200, 2, generator=g, dtype=torch.float64)
    theta = torch.rand(200, generator=g, dtype=torch.float64) * 2 * math.pi
    velocity = torch.stack((theta.cos(), theta.sin()), -1)
    pos = data.bounce_positions(start, velocity, num_frames=30)
    bounced = 0
    for i in range(200):
        p, v = start[i].tolist(), velocity[i].tolist()
        for t in range(30):
            for k in range(2):
                p[k] += v[k] * 0.1
                if p[k] <= 0 or p[k] >= 1:
                    p[k], v[k] = min(max(p[k], 0.0), 1.0), -v[k]
                    bounced += 1
            assert pos[i, t].tolist() == pytest.approx(p, abs=1e-12)
    assert bounced > 100  # the comparison did exercise the bounce


def test_single_digit_sequences_are_that_digit_placed_inside_the_canvas(test_digits):
    digit = test_digits[7]
    rows, cols = digit.nonzero(as_tuple=True)
    top0, left0 = int(rows.min()), int(cols.min())
    seqs = data.generate_sequences(test_digits[7:8], 6, gen(2), num_digits=1)
    frames = (seqs * 255).round().to(torch.uint8).view(-1, 64, 64)
    seen = set()
    for frame in frames:
        assert frame.sum() == digit.sum()  # the whole digit is on the canvas, nothing else
        r, c = frame.nonzero(as_tuple=True)
        top, left = int(r.min()) - top0, int(c.min()) - left0
        assert 0 <= top <= 36 and 0 <= left <= 36
        assert torch.equal(frame[top:top + 28, left:left + 28], digit)
        seen.add((top, left))
    assert len(seen) > 10  # the digit moves


def test_two_copies_of_one_digit_combine_by_max(test_digits):
    digit = test_digits[3]
    seqs = data.generate_sequences(test_digits[3:4], 4, gen(9))
    frames = (seqs * 255).round().to(torch.uint8).view(-1, 64 * 64)
    ink = int(digit.sum())
    allowed = set(digit.unique().tolist())
    for frame in frames:
        assert set(frame.unique().tolist()) <= allowed
        assert ink <= int(frame.sum()) <= 2 * ink  # max of two placements: no clipping, no sum


def test_generation_is_deterministic_per_seed(train_digits):
    a = data.generate_sequences(train_digits, 4, gen(11))
    b = data.generate_sequences(train_digits, 4, gen(11))
    c = data.generate_sequences(train_digits, 4, gen(12))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_generation_rejects_bad_digits():
    with pytest.raises(ValueError, match="uint8"):
        data.generate_sequences(torch.zeros(3, 28, 28), 2, gen(0))


# ---- augmentation ------------------------------------------------------------------------------

def identify_transform(before: torch.Tensor, after: torch.Tensor, crop: bool) -> tuple:
    """Find the (top, left, flip_rows, flip_cols) that maps one (C, H, W) frame to another."""
    source = F.interpolate(before[None], scale_factor=1 / 0.94, mode="bilinear",
                           align_corners=False)[0] if crop else before
    extra = source.shape[-1] - before.shape[-1]
    matches = []
    for top in range(extra + 1):
        for left in range(extra + 1):
            window = source[:, top:top + before.shape[-2], left:left + before.shape[-1]]
            for fr in (False, True):
                for fc in (False, True):
                    dims = [d for d, on in ((-2, fr), (-1, fc)) if on]
                    if torch.equal(window.flip(dims) if dims else window, after):
                        matches.append((top, left, fr, fc))
    assert len(matches) == 1, matches
    return matches[0]


def apply_transform(frame: torch.Tensor, transform: tuple, crop: bool) -> torch.Tensor:
    top, left, fr, fc = transform
    if crop:
        frame = F.interpolate(frame[None], scale_factor=1 / 0.94, mode="bilinear",
                              align_corners=False)[0]
    window = frame[:, top:top + 64, left:left + 64]
    dims = [d for d, on in ((-2, fr), (-1, fc)) if on]
    return window.flip(dims) if dims else window


@pytest.mark.parametrize("kind", ["crop", "flip", "crop+flip"])
def test_augment_applies_one_transform_to_every_frame(kind):
    seqs = torch.rand(6, 4, 1, 64, 64, generator=gen(4))
    out = data.augment(seqs, kind, gen(8))
    assert out.shape == seqs.shape and out.dtype == seqs.dtype
    crop = "crop" in kind
    transforms = []
    for b in range(6):
        transform = identify_transform(seqs[b, 0], out[b, 0], crop)
        transforms.append(transform)
        for t in range(1, 4):
            torch.testing.assert_close(out[b, t], apply_transform(seqs[b, t], transform, crop))
    if crop:
        assert len({tr[:2] for tr in transforms}) > 1  # sequences get different crops


def test_crop_offsets_cover_the_range_independently():
    seqs = torch.rand(100, 1, 1, 64, 64, generator=gen(12))
    out = data.augment(seqs, "crop", gen(13))
    offsets = [identify_transform(seqs[b, 0], out[b, 0], crop=True)[:2] for b in range(100)]
    assert {top for top, _ in offsets} == set(range(5))  # 64 / 0.94 -> 68: offsets 0..4
    assert {left for _, left in offsets} == set(range(5))
    assert any(top != left for top, left in offsets)


def test_augment_keeps_identical_frames_identical():
    frame = torch.rand(8, 1, 1, 64, 64, generator=gen(6))
    seqs = frame.expand(8, 20, 1, 64, 64).contiguous()
    out = data.augment(seqs, "crop+flip", gen(1))
    assert torch.equal(out, out[:, :1].expand_as(out))
    assert out.min() >= 0 and out.max() <= 1


def test_augment_none_is_identity():
    seqs = torch.rand(2, 20, 1, 64, 64, generator=gen(0))
    assert torch.equal(data.augment(seqs, "none", gen(0)), seqs)


def test_flip_cascade_probabilities():
    n = 4000
    seqs = torch.arange(16.0).view(1, 1, 1, 4, 4).expand(n, 1, 1, 4, 4)
    out = data.augment(seqs, "flip", gen(21))[:, 0, 0]
    base = seqs[0, 0, 0]
    rotate = (out == base.flip(-2, -1)).flatten(1).all(1).float().mean()
    vertical = (out == base.flip(-2)).flatten(1).all(1).float().mean()
    horizontal = (out == base.flip(-1)).flatten(1).all(1).float().mean()
    unchanged = (out == base).flatten(1).all(1).float().mean()
    assert rotate + vertical + horizontal + unchanged == pytest.approx(1.0)
    assert abs(rotate - 3 / 4) < 0.04
    assert abs(vertical - 3 / 16) < 0.04
    assert abs(horizontal - 3 / 64) < 0.025
    assert abs(unchanged - 1 / 64) < 0.015


def test_augment_rejects_unknown_kind():
    with pytest.raises(ValueError, match="none, crop, flip, crop\\+flip"):
        data.augment(torch.zeros(1, 20, 1, 64, 64), "rotate", gen(0))


# ---- splitting, fixed sets, test set -----------------------------------------------------------

def test_split_frames():
    seqs = torch.arange(20.0).view(1, 20, 1, 1, 1).expand(2, 20, 1, 4, 4)
    inputs, targets = data.split_frames(seqs)
    assert inputs.shape == targets.shape == (2, 10, 1, 4, 4)
    assert inputs[0, :, 0, 0, 0].tolist() == list(range(10))
    assert targets[0, :, 0, 0, 0].tolist() == list(range(10, 20))
    with pytest.raises(ValueError, match="20"):
        data.split_frames(torch.zeros(2, 10, 1, 4, 4))


def test_make_fixed_set_is_deterministic_and_chunk_independent_of_calls(train_digits):
    a = data.make_fixed_set(train_digits, 5, seed=7)
    assert a.shape == (5, 20, 1, 64, 64) and a.device.type == "cpu"
    assert torch.equal(a, data.make_fixed_set(train_digits, 5, seed=7))
    assert not torch.equal(a, data.make_fixed_set(train_digits, 5, seed=8))
    assert a.dtype == torch.uint8 and torch.equal(a, data.generate_sequences_uint8(train_digits, 5, gen(7)))
    chunked = data.make_fixed_set(train_digits, 5, seed=7, chunk=2)
    assert chunked.shape == a.shape
    assert torch.equal(chunked, data.make_fixed_set(train_digits, 5, seed=7, chunk=2))


def test_load_test_set_falls_back_to_generated_stand_in(tmp_path, test_digits):
    seqs, label = data.load_test_set(6, seed=3, data_dir=tmp_path, digits=test_digits)
    assert torch.equal(seqs, data.make_fixed_set(test_digits, 6, seed=3))
    assert label.startswith("generated stand-in")
    for part in ("6 sequences", "500 MNIST test digits", "seed 3", "mnist_test_seq.npy not in the data dir"):
        assert part in label
    assert str(tmp_path) not in label and "/" not in label  # the same label on every machine
    assert label == data.test_set_label(6, 3, 500)


def test_load_test_set_names_its_digits_full_mnist_or_the_bundled_sample(mnist_dir, monkeypatch,
                                                                        tmp_path):
    monkeypatch.chdir(tmp_path)
    seqs, label = data.load_test_set(2, seed=0, data_dir=mnist_dir)
    assert seqs.shape == (2, 20, 1, 64, 64) and label.startswith("generated stand-in")
    if mnist_dir == data.SAMPLE:
        assert "bundled sample, NOT full MNIST" in label and "500 test digits" in label
    else:
        assert "10,000 MNIST test digits" in label and "sample" not in label


def test_load_test_set_uses_standard_npy_time_first(tmp_path):
    frames = np.random.default_rng(2).integers(0, 256, (20, 5, 64, 64), dtype=np.uint8)
    np.save(tmp_path / "mnist_test_seq.npy", frames)
    seqs, label = data.load_test_set(3, seed=0, data_dir=tmp_path)  # no MNIST files needed
    assert label == data.TEST_SET_STANDARD
    assert seqs.shape == (3, 20, 1, 64, 64) and seqs.dtype == torch.uint8
    assert data.has_standard_test_set(tmp_path) and not data.has_standard_test_set(tmp_path / "x")
    for i in range(3):
        for t in (0, 13, 19):
            np.testing.assert_array_equal(seqs[i, t, 0].numpy(), frames[t, i])
    with pytest.raises(ValueError, match="holds 5"):
        data.load_test_set(6, seed=0, data_dir=tmp_path)


def test_load_test_set_rejects_a_wrong_npy(tmp_path):
    np.save(tmp_path / "mnist_test_seq.npy", np.zeros((5, 20, 64, 64), np.uint8))
    with pytest.raises(ValueError, match="time first"):
        data.load_test_set(2, seed=0, data_dir=tmp_path)


def test_uint8_generation_is_the_float_generation_in_pixels(train_digits):
    a = data.generate_sequences(train_digits, 3, torch.Generator().manual_seed(5))
    b = data.generate_sequences_uint8(train_digits, 3, torch.Generator().manual_seed(5))
    assert b.dtype == torch.uint8 and torch.equal(data.to_float(b), a)
