"""Trainer: OneCycle per step, deterministic per seed, exact resume, divergence detection."""

import math
import os

import pytest
import torch

from simvp_core.config import TrainConfig
from simvp_core.data import load_mnist
from simvp_core.trainer import DivergedError, EpochEnd, Trainer

TINY = dict(preset="simvpv2", c_s=4, c_t=8, n_t=2, train_size=8, val_size=4, test_size=4,
            batch_size=4, eval_batch_size=4, epochs=2, device="cpu")


@pytest.fixture(scope="module")
def digits(mnist_dir):
    return load_mnist("train", mnist_dir)[:2000], load_mnist("test", mnist_dir)[:1000]


def make(digits, **changes):
    return Trainer(TrainConfig(**{**TINY, **changes}), train_digits=digits[0], test_digits=digits[1])


def test_one_cycle_is_stepped_every_iteration_with_torch_defaults(digits):
    trainer = make(digits, epochs=3, train_size=20)  # 5 steps per epoch, 15 in all
    lrs = [trainer.scheduler.get_last_lr()[0]]
    for _ in range(3):
        trainer.train_epoch()
        lrs.append(trainer.history[-1]["lr_now"])
    total, peak = 15, 1e-3
    initial, final = peak / 25, peak / 25 / 1e4  # div_factor 25, final_div_factor 1e4
    up_end = 0.3 * total - 1

    def expected(step):  # cosine phases, written out from OneCycleLR's documented defaults
        if step <= up_end:
            start, end, pct = initial, peak, step / up_end
        else:
            start, end, pct = peak, final, (step - up_end) / (total - 1 - up_end)
        return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))

    assert lrs[0] == pytest.approx(initial)
    for epoch in (1, 2, 3):
        assert lrs[epoch] == pytest.approx(expected(5 * epoch), rel=1e-6)


def test_same_seed_same_numbers_other_seed_other_numbers(digits):
    a, b, c = make(digits), make(digits), make(digits, seed=7)
    ra, rb, rc = a.train_epoch(), b.train_epoch(), c.train_epoch()
    assert ra["loss"] == rb["loss"] and ra["val_mse"] == rb["val_mse"]
    assert ra["loss"] != rc["loss"]


def test_history_rows_hold_loss_validation_metrics_and_speed(digits):
    row = make(digits).train_epoch()
    assert {"epoch", "loss", "val_mse", "val_mae", "val_ssim", "val_psnr", "lr_now", "seconds",
            "seq_per_s"} <= set(row)
    assert row["epoch"] == 1 and row["val_mse"] > 0 and 0 < row["val_ssim"] <= 1


def test_resume_after_an_epoch_equals_an_uninterrupted_run(digits, tmp_path):
    straight = make(digits, augment="crop+flip", drop_path=0.1, lambda_gdl=0.5, lambda_ddr=0.1)
    straight.train_epoch()
    straight.train_epoch()

    first = make(digits, augment="crop+flip", drop_path=0.1, lambda_gdl=0.5, lambda_ddr=0.1)
    first.train_epoch()
    first.save_checkpoint(tmp_path / "ckpt.pt")
    torch.manual_seed(999)  # whatever happened in between must not matter
    resumed = make(digits, augment="crop+flip", drop_path=0.1, lambda_gdl=0.5, lambda_ddr=0.1)
    resumed.load_checkpoint(tmp_path / "ckpt.pt")
    assert resumed.epoch == 1
    resumed.train_epoch()

    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert resumed.history[-1]["val_mse"] == straight.history[-1]["val_mse"]
    assert resumed.evaluate("test") == straight.evaluate("test")


def test_checkpoint_loads_with_weights_only(digits, tmp_path):
    trainer = make(digits)
    trainer.train_epoch()
    trainer.save_checkpoint(tmp_path / "c.pt")
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    assert state["epoch"] == 1 and {"model", "optimizer", "scheduler", "rng_cpu"} <= set(state)


def test_a_checkpoint_of_another_config_is_refused(digits, tmp_path):
    trainer = make(digits)
    trainer.train_epoch()
    trainer.save_checkpoint(tmp_path / "c.pt")
    with pytest.raises(ValueError, match="different config"):
        make(digits, lr=3e-3).load_checkpoint(tmp_path / "c.pt")
    make(digits, sync_every=1).load_checkpoint(tmp_path / "c.pt")  # execution settings may differ


def test_a_nan_loss_raises_diverged(digits):
    trainer = make(digits, sync_every=1)
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    with pytest.raises(DivergedError, match="nan"):
        trainer.train_epoch()


def test_fit_calls_back_after_each_epoch_and_once_more_for_a_trainer_restored_after_its_end(digits, tmp_path):
    trainer, ends = make(digits), []
    history = trainer.fit(ends.append)
    assert [(e.row["epoch"], e.last, e.restored) for e in ends] == [(1, False, False), (2, True, False)]
    assert history == trainer.history and [e.row for e in ends] == history
    trainer.save_checkpoint(tmp_path / "done.pt")
    restored, again = make(digits), []
    restored.load_checkpoint(tmp_path / "done.pt")
    restored.fit(again.append)
    assert again == [EpochEnd(history[-1], last=True, restored=True)] and restored.epoch == 2


def test_fit_raises_diverged_before_that_epochs_callback(digits):
    trainer, ends = make(digits, sync_every=1), []
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    with pytest.raises(DivergedError, match="epoch 1"):
        trainer.fit(ends.append)
    assert ends == [] and trainer.epoch == 0


def test_training_past_the_last_epoch_is_an_error(digits):
    trainer = make(digits, epochs=1)
    trainer.train_epoch()
    with pytest.raises(RuntimeError, match="epochs are done"):
        trainer.train_epoch()


def test_predict_returns_inputs_targets_and_predictions(digits):
    inputs, targets, preds = make(digits).predict(3)
    assert inputs.shape == targets.shape == preds.shape == (3, 10, 1, 64, 64)
    assert inputs.device.type == "cpu" and preds.dtype == torch.float32


def test_a_checkpoint_that_does_not_fit_is_refused_in_one_line_naming_it(digits, tmp_path):
    from simvp_core.trainer import CheckpointError

    trainer = make(digits)
    trainer.train_epoch()
    good = tmp_path / "good.pt"
    trainer.save_checkpoint(good)
    state = torch.load(good, weights_only=True)
    other = make(digits, c_s=6)
    files = {  # name -> (bytes or an object to torch.save, what the line says)
        "truncated.pt": (good.read_bytes()[:len(good.read_bytes()) // 2], "truncated or corrupt"),
        "garbage.pt": (b"\x80\x04garbage" * 100, "not a torch checkpoint file"),
        "empty.pt": (b"", "truncated or corrupt"),
        "foreign.pt": ({"a": 1}, "not a checkpoint of this trainer"),
        "tensor.pt": (torch.zeros(3), "not a checkpoint of this trainer"),
        "version.pt": ({**state, "version": 99}, "format version 99"),
        "config.pt": (other.state_dict(), "written for a different config: c_s 6 (now 4)"),
        "model.pt": ({**state, "model": other.model.state_dict()}, "written for a different model"),
        # issue 23: what a checkpoint claims is checked before it is believed
        "epochs.pt": ({**state, "epoch": 10**30}, "claims 1000000000000000000000000000000 epochs done"),
        "history.pt": ({**state, "history": "[]"}, "its history is not 1 epoch rows"),
        "complex.pt": ({**state, "model": {k: v.to(torch.complex64) if v.is_floating_point() else v
                                           for k, v in state["model"].items()}}, "complex weights"),
        "rng.pt": ({**state, "rng_cpu": torch.zeros(3)}, "RNG state is malformed"),
        "fifo.pt": (None, "a FIFO (named pipe), not a regular checkpoint"),
    }
    for name, (content, _) in files.items():
        if content is None:
            os.mkfifo(tmp_path / name)  # a read would block for ever
        elif isinstance(content, bytes):
            (tmp_path / name).write_bytes(content)
        else:
            torch.save(content, tmp_path / name)
    before = {name: (tmp_path / name).read_bytes() for name in files if files[name][0] is not None}
    fresh = make(digits)
    weights = {k: v.clone() for k, v in fresh.model.state_dict().items()}
    for name, (_, words) in files.items():
        with pytest.raises(CheckpointError) as info:
            fresh.load_checkpoint(tmp_path / name)
        message = str(info.value)
        assert message.startswith(f"{tmp_path / name}: ") and words in message, message
        assert "\n" not in message and len(message) <= 300, message
        assert isinstance(info.value, ValueError)  # the CLI's exit code 2
    assert fresh.epoch == 0 and fresh.history == []  # nothing restored from any of them
    assert all(torch.equal(v, weights[k]) for k, v in fresh.model.state_dict().items())
    assert {name: (tmp_path / name).read_bytes() for name in before} == before


def save_as_written_on_cuda(state: dict, path) -> None:
    """torch.save `state` with the model's and optimizer's storages tagged 'cuda:0', as a CUDA run
    writes them (its RNG states stay CPU tensors, as on a GPU); torch then refuses the file on a
    machine without CUDA unless map_location moves it."""
    on_gpu = {t.untyped_storage().data_ptr() for t in state["model"].values()}
    on_gpu |= {t.untyped_storage().data_ptr() for s in state["optimizer"]["state"].values()
               for t in s.values()}
    entry = (0, lambda storage: "cuda:0" if storage.data_ptr() in on_gpu else None,
             lambda obj, location: None)
    torch.serialization.register_package(*entry)
    try:
        torch.save(state, path)
    finally:
        torch.serialization._package_registry.remove(entry)


def test_a_checkpoint_written_on_cuda_resumes_on_a_cpu(digits, tmp_path):
    trainer = make(digits)
    trainer.train_epoch()
    state = {**trainer.state_dict(), "rng_cuda": [torch.zeros(16, dtype=torch.uint8)]}  # a GPU's RNG
    save_as_written_on_cuda(state, tmp_path / "cuda.pt")
    if not torch.cuda.is_available():  # the file really is a CUDA one: torch will not load it as it is
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "cuda.pt", weights_only=True)
    resumed = make(digits)
    resumed.load_checkpoint(tmp_path / "cuda.pt")
    assert resumed.epoch == 1 and next(resumed.model.parameters()).device.type == "cpu"
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    resumed.train_epoch()  # the optimizer state came along to the CPU too


def test_a_checkpoint_of_an_older_version_with_other_execution_settings_resumes(digits, tmp_path):
    trainer = make(digits)
    trainer.train_epoch()
    state = trainer.state_dict()
    config = {k: v for k, v in state["config"].items() if k != "memory_format"}
    old = {**state, "config": {**config, "channels_last": True, "compile": True, "amp": "bf16"}}
    torch.save(old, tmp_path / "old.pt")  # before memory_format: channels_last and compile were bools
    resumed = make(digits)
    resumed.load_checkpoint(tmp_path / "old.pt")
    assert resumed.epoch == 1 and resumed.cfg == trainer.cfg  # this run's execution settings count
