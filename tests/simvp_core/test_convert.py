"""OpenSTL checkpoints in and out: names and shapes against OpenSTL's, bit-identical round trips, refusals."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from simvp_core import convert
from simvp_core.models import TRANSLATORS, SimVP, build_model, count_params

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "openstl_keys.json").read_text())
OPENSTL_TRANSLATOR = {v: k for k, v in convert.OPENSTL_MODEL_TYPES.items()}  # model_type -> translator
EXPECTED_PRESET = {"gSTA": "simvpv2", "gSTA-L": "simvpv2-l", "IncepU": "incepu", "TAU": "tau",
                   "PoolFormer": "poolformer-openstl"}
TINY = {"c_s": 4, "c_t": 16, "n_t": 3, "n_s": 2}


def randomised(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with every float tensor redrawn: no two values alike by chance."""
    gen = torch.Generator().manual_seed(0)
    return {k: torch.randn(v.shape, generator=gen) if v.is_floating_point() else v + 7
            for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", list(FIXTURE["models"]))
def test_our_models_carry_openstls_names_and_shapes_and_its_checkpoints_rebuild_the_preset(name):
    entry = FIXTURE["models"][name]
    kwargs = entry["kwargs"]
    with torch.device("meta"):
        model = build_model("simvpv2", translator=OPENSTL_TRANSLATOR[entry["model_type"]], c_s=kwargs["hid_S"],
                            c_t=kwargs["hid_T"], n_s=kwargs["N_S"], n_t=kwargs["N_T"])
    theirs = {key: list(shape) for key, shape in entry["state_dict"]}
    named = convert.convert_state(model.state_dict(), convert.OURS)
    assert {key: list(v.shape) for key, v in named.items()} == theirs
    assert count_params(model) == entry["params"]

    with torch.device("meta"):
        checkpoint = {key: torch.empty(shape) for key, shape in theirs.items()}
    ours = convert.convert_state(checkpoint, convert.OPENSTL)
    cfg = convert.infer_config(ours)
    with torch.device("meta"):
        convert.check_fits(SimVP(cfg), ours, source=convert.OPENSTL)
    assert convert.preset_for(cfg) == (EXPECTED_PRESET[name], {})


@pytest.mark.parametrize("translator", TRANSLATORS)
def test_state_dict_round_trip_through_openstl_names_is_bit_identical(translator):
    state = randomised(build_model("simvpv2", translator=translator, **TINY))
    back = convert.convert_state(convert.convert_state(state, convert.OURS), convert.OPENSTL)
    assert list(back) == list(state)
    assert all(torch.equal(back[k], state[k]) and back[k].dtype == state[k].dtype for k in state)


@pytest.mark.parametrize("translator", sorted(convert.OPENSTL_MODEL_TYPES))
def test_cli_round_trip_ours_to_openstl_and_back_is_bit_identical(tmp_path, translator):
    overrides = {"translator": translator, **TINY}
    preset, wanted = convert.preset_for(build_model("simvpv2", **overrides).cfg)
    state = randomised(build_model(preset, **wanted))
    convert.save_model_file(tmp_path / "ours.pt", preset, wanted, state)
    assert convert.main(["to-openstl", str(tmp_path / "ours.pt"), str(tmp_path / "openstl.ckpt")]) == 0
    lightning = torch.load(tmp_path / "openstl.ckpt", weights_only=True)
    assert all(key.startswith("model.") for key in lightning["state_dict"])
    if translator != "incepu":
        assert lightning["state_dict"]["model.hid.enc.1.block.layer_scale_1"].shape == (TINY["c_t"],)
    assert lightning["hyper_parameters"]["model_type"] == convert.OPENSTL_MODEL_TYPES[translator]
    assert convert.main(["from-openstl", str(tmp_path / "openstl.ckpt"), str(tmp_path / "back.pt")]) == 0
    model, back_preset, back_overrides = convert.load_model(tmp_path / "back.pt")
    assert (back_preset, back_overrides) == (preset, wanted)
    assert model.cfg == build_model(preset, **wanted).cfg
    back = model.state_dict()
    assert list(back) == list(state) and all(torch.equal(back[k], state[k]) for k in state)


def test_layer_scales_change_shape_between_c_and_c_1_1():
    state = build_model("simvpv2", **TINY).state_dict()
    named = convert.convert_state(state, convert.OURS)
    assert named["hid.enc.0.block.layer_scale_1"].shape == (40,)  # T * c_s = 10 * 4
    assert state["translator.blocks.0.ls1"].shape == (40, 1, 1)


def openstl_checkpoint() -> dict:
    """A tiny gSTA checkpoint in OpenSTL's Lightning layout."""
    state = convert.convert_state(build_model("simvpv2", **TINY).state_dict(), convert.OURS)
    return {"state_dict": {"model." + k: v for k, v in state.items()}}


@pytest.mark.parametrize("change,fragments", [
    (lambda sd: sd.pop("model.hid.enc.1.block.mlp.fc2.bias"), ["missing", "hid.enc.1.block.mlp.fc2.bias"]),
    (lambda sd: sd.update({"model.hid.enc.0.block.attn.extra.weight": torch.zeros(1)}),
     ["no SimVP name", "hid.enc.0.block.attn.extra.weight"]),
    (lambda sd: sd.update({"model.hid.enc.1.block.mlp.fc2.weight": torch.zeros(16, 64, 1, 1)}),
     ["wrong shape", "hid.enc.1.block.mlp.fc2.weight [16, 64, 1, 1]"]),
    (lambda sd: sd.update({"model.hid.enc.1.reduction.weight": torch.zeros(16, 16, 1, 1)}),
     ["unexpected", "hid.enc.1.reduction.weight"]),
])
def test_a_mismatching_checkpoint_is_refused_in_one_line_naming_the_keys(tmp_path, capsys, change, fragments):
    ckpt = openstl_checkpoint()
    change(ckpt["state_dict"])
    torch.save(ckpt, tmp_path / "bad.ckpt")
    assert convert.main(["from-openstl", str(tmp_path / "bad.ckpt"), str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and len(err) <= 300
    assert all(fragment in err for fragment in fragments), err
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize("overrides,fragment", [
    ({"translator": "poolformer"}, "use poolformer-openstl"),
    ({"act": "starrelu"}, "StarReLU"),
])
def test_models_openstl_lacks_are_refused_on_the_way_out(tmp_path, capsys, overrides, fragment):
    preset, wanted = convert.preset_for(build_model("simvpv2", **TINY, **overrides).cfg)
    convert.save_model_file(tmp_path / "ours.pt", preset, wanted, build_model(preset, **wanted).state_dict())
    assert convert.main(["to-openstl", str(tmp_path / "ours.pt"), str(tmp_path / "o.ckpt")]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1 and len(err) <= 300


def test_a_checkpoint_holding_objects_weights_only_refuses_is_refused_with_the_fix(tmp_path, capsys):
    torch.save({**openstl_checkpoint(), "hyper_parameters": argparse.Namespace(hid_S=4)}, tmp_path / "ns.ckpt")
    assert convert.main(["from-openstl", str(tmp_path / "ns.ckpt"), str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "weights_only=True refuses" in err and "state_dict alone" in err and len(err) <= 300


def test_no_conversion_writes_over_its_input_or_another_kind_of_file_without_overwrite(tmp_path, capsys):
    from simvp_core.config import TrainConfig
    from simvp_core.trainer import Trainer

    trainer = Trainer(TrainConfig(preset="simvpv2", **TINY, train_size=4, val_size=2, test_size=2, batch_size=2,
                                  eval_batch_size=2, epochs=1, device="cpu"), data_dir="sample")
    ckpt = tmp_path / "checkpoint.pt"
    trainer.save_checkpoint(ckpt)
    before = ckpt.read_bytes()
    cases = [(["to-openstl", str(ckpt), str(ckpt)], "the output is the input"),  # issue 23's case
             (["from-openstl", str(ckpt), str(ckpt)], "the output is the input")]
    (tmp_path / "notes.txt").write_text("my notes")
    cases.append((["to-openstl", str(ckpt), str(tmp_path / "notes.txt")], "holds something else, not an OpenSTL"))
    assert convert.main(["to-openstl", str(ckpt), str(tmp_path / "a.ckpt")]) == 0
    cases.append((["from-openstl", str(tmp_path / "a.ckpt"), str(ckpt)],
                  "holds a trainer checkpoint, not a SimVP model"))
    capsys.readouterr()
    for argv, words in cases:
        assert convert.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert words in err and "--overwrite" in err and err.count("\n") == 1, err
    assert ckpt.read_bytes() == before and (tmp_path / "notes.txt").read_text() == "my notes"
    assert convert.main(["to-openstl", str(ckpt), str(tmp_path / "a.ckpt")]) == 0  # its own kind: replaced
    assert convert.main(["to-openstl", str(ckpt), str(tmp_path / "notes.txt"), "--overwrite"]) == 0
    assert convert.file_kind(tmp_path / "notes.txt") == convert.OPENSTL_FILE


@pytest.mark.parametrize("damage, words", [
    (lambda f: f.update(model={k: v.to(torch.complex64) for k, v in f["model"].items()}), "complex, not real"),
    (lambda f: f.update(overrides="c_s=4"), "a malformed model file"),
    (lambda f: f.update(preset=["simvpv2"]), "a malformed model file"),
    (lambda f: f.update(model="weights"), "its weights are a str, not a state dict"),
    (lambda f: f["model"].update({next(iter(f["model"])): [1.0, 2.0]}), "not a tensor"),
    (lambda f: f.update(format="simvp-model/1", preset="nope"), "unknown preset 'nope'"),
])
def test_a_malformed_model_file_is_refused_in_one_line(tmp_path, damage, words):
    state = build_model("simvpv2", **TINY).state_dict()
    convert.save_model_file(tmp_path / "m.pt", "simvpv2", TINY, state)
    content = torch.load(tmp_path / "m.pt", weights_only=True)
    damage(content)
    torch.save(content, tmp_path / "m.pt")
    with pytest.raises(convert.ConvertError) as info:
        convert.load_model(tmp_path / "m.pt")
    assert words in str(info.value) and len(str(info.value)) < 300 and "\n" not in str(info.value)


def test_a_trainer_checkpoint_claiming_impossible_epochs_is_refused(tmp_path):
    from simvp_core.config import TrainConfig

    cfg = TrainConfig(preset="simvpv2", **TINY, epochs=2)
    model = build_model("simvpv2", **TINY)
    torch.save({"version": 1, "config": cfg.to_dict(), "epoch": 10**30, "history": "[]",
                "model": model.state_dict()}, tmp_path / "checkpoint.pt")
    with pytest.raises(convert.ConvertError, match=r"a malformed trainer checkpoint \(its config, or epoch 1000"):
        convert.load_model(tmp_path / "checkpoint.pt")
