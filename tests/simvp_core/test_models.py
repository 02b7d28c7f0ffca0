"""SimVP models: parameter counts against the reference, shapes, structure, validation."""

from __future__ import annotations

import math

import pytest
import torch

from simvp_core.layers import StarReLU
from simvp_core.models import (
    ACTIVATIONS,
    MODEL_FIELDS,
    PRESETS,
    TRANSLATORS,
    ModelConfig,
    build_model,
    count_params,
    resolve_model_config,
)

TINY = {"c_s": 8, "c_t": 16, "n_t": 2, "in_shape": (10, 1, 32, 32)}
OPENSTL_SIZE = {"c_s": 64, "c_t": 512, "n_t": 8}


def meta_params(preset: str, **overrides) -> int:
    """Parameter count without allocating: the model built on the meta device."""
    with torch.device("meta"):
        return count_params(build_model(preset, **overrides))


# parameter counts in millions as the reference gives them (paper Table 5; faithful rebuilds)
@pytest.mark.parametrize("preset,overrides,millions,decimals", [
    ("simvpv2", {}, 6.456, 3),
    ("incepu", {}, 7.410, 3),
    ("simvpv2-l", {}, 46.770, 3),
    ("poolformer", {}, 5.2, 1),
    ("poolformer", {}, 5.173, 3),
    ("poolformer-openstl", {}, 5.086, 3),
    ("tau", {}, 6.191, 3),
    ("simvpv2", {"translator": "incepu", **OPENSTL_SIZE}, 57.946, 3),
    ("simvpv2", {"translator": "gsta", **OPENSTL_SIZE}, 46.770, 3),
    ("simvpv2", {"translator": "tau", **OPENSTL_SIZE}, 44.656, 3),
    ("simvpv2", {"translator": "poolformer-openstl", **OPENSTL_SIZE}, 37.115, 3),
])
def test_parameter_counts_match_the_reference(preset, overrides, millions, decimals):
    assert round(meta_params(preset, **overrides) / 1e6, decimals) == millions


def test_simvpv2_splits_into_encoder_translator_decoder_as_the_reference():
    model = build_model("simvpv2")
    assert round(count_params(model.encoder) / 1e3, 1) == 28.3
    assert round(count_params(model.translator) / 1e6, 3) == 6.335
    assert round(count_params(model.decoder) / 1e3, 1) == 92.8


def test_starrelu_adds_two_scalars_per_activation():
    # each MetaFormer block has two activations (attention and MLP); the pooling mixer has none
    for preset, per_block in (("simvpv2", 2), ("poolformer", 1), ("poolformer-openstl", 1)):
        extra = meta_params(preset, act="starrelu") - meta_params(preset, act="gelu")
        assert extra == 2 * per_block * PRESETS[preset].n_t


@pytest.mark.parametrize("translator", TRANSLATORS)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_every_translator_and_activation_maps_a_sequence_to_a_sequence(translator, act):
    torch.manual_seed(0)
    model = build_model("simvpv2", translator=translator, act=act, drop_path=0.1, **TINY)
    x = torch.rand(2, 10, 1, 32, 32)
    y = model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    unused = [name for name, p in model.named_parameters() if p.grad is None]
    assert not unused


def test_output_is_linear_not_squashed():
    model = build_model("simvpv2", **TINY)
    with torch.no_grad():
        model.decoder.readout.bias.fill_(3.0)
        y = model.eval()(torch.rand(1, 10, 1, 32, 32))
    assert y.min() > 1.0  # no sigmoid or clamp to [0, 1]


@pytest.mark.parametrize("n_s,latent_size", [(1, 32), (2, 16), (3, 16), (4, 8), (6, 4)])
def test_encoder_downsamples_on_every_second_block(n_s, latent_size):
    model = build_model("simvpv2", n_s=n_s, **TINY)
    latent, skip = model.encoder(torch.rand(3, 1, 32, 32))
    assert latent.shape == (3, 8, latent_size, latent_size)
    assert skip.shape == (3, 8, 32, 32)
    assert model(torch.rand(1, 10, 1, 32, 32)).shape == (1, 10, 1, 32, 32)


def test_skip_is_added_to_the_input_of_the_last_decoder_block():
    model = build_model("simvpv2", **TINY).eval()
    seen = {}
    model.encoder.blocks[0].register_forward_hook(lambda m, i, out: seen.update(skip=out))
    model.decoder.blocks[-2].register_forward_hook(lambda m, i, out: seen.update(before=out))
    model.decoder.blocks[-1].register_forward_pre_hook(lambda m, args: seen.update(last_in=args[0]))
    with torch.no_grad():
        model(torch.rand(2, 10, 1, 32, 32))
    torch.testing.assert_close(seen["last_in"], seen["before"] + seen["skip"])


def test_decoder_upsamples_with_pixel_shuffle_in_mirrored_order():
    decoder = build_model("simvpv2").decoder
    ups = [isinstance(block.conv, torch.nn.Sequential) for block in decoder.blocks]
    assert ups == [True, False, True, False]
    assert isinstance(decoder.blocks[0].conv[1], torch.nn.PixelShuffle)


def test_metaformer_blocks_follow_the_reference_widths_rates_and_layer_scale():
    model = build_model("simvpv2", drop_path=0.2)
    blocks = model.translator.blocks
    widths_in = [b.norm1.num_features for b in blocks]
    widths_out = [b(torch.zeros(2, w, 16, 16)).shape[1] for b, w in zip(blocks, widths_in)]
    assert widths_in == [320, 256, 256, 256]  # T * C_s = 320 enters, C_t = 256 inside
    assert widths_out == [256, 256, 256, 320]
    assert [round(b.drop_path.p, 4) for b in blocks] == [0.01, 0.0733, 0.1367, 0.2]
    assert all(torch.all(b.ls1 == 1e-2) and torch.all(b.ls2 == 1e-2) for b in blocks)
    assert isinstance(blocks[0].norm1, torch.nn.BatchNorm2d)


def default_bound(m: torch.nn.Module) -> float:
    """PyTorch's default init of a conv or linear: weight and bias uniform in +-1/sqrt(fan_in)."""
    return 1.0 / math.sqrt(m.weight[0].numel())


def test_tau_attention_keeps_pytorchs_default_init_as_in_openstl_and_its_mlp_the_metaformer_init():
    torch.manual_seed(0)
    block = build_model("tau").translator.blocks[1]  # 256 channels
    layers = [m for m in block.mixer.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) == 7  # proj_in, the large kernel's 3 convs, 2 gate linears, proj_out
    for m in layers:
        bound = default_bound(m)
        assert m.weight.abs().max() <= bound
        assert m.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
        if m.bias is not None:
            assert m.bias.abs().max() <= bound and m.bias.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.3)
    gate_stds = [round(m.weight.std().item(), 3) for m in block.mixer.gate if isinstance(m, torch.nn.Linear)]
    assert gate_stds == pytest.approx([0.036, 0.144], abs=0.002)  # not the MetaFormer init's 0.02
    fc1 = block.mlp.fc1  # normal(0, sqrt(2 / fan_out)), zero bias
    assert fc1.weight.std().item() == pytest.approx(math.sqrt(2 / fc1.out_channels), rel=0.05)
    assert torch.all(fc1.bias == 0)


def test_gsta_attention_keeps_the_metaformer_init():
    torch.manual_seed(0)
    proj_in = build_model("simvpv2").translator.blocks[1].mixer.proj_in
    assert proj_in.weight.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.05)  # 2.4x the default's
    assert torch.all(proj_in.bias == 0)


def test_openstl_poolformer_has_groupnorm_a_plain_mlp_and_layer_scale_1e_5():
    torch.manual_seed(0)
    paper, openstl = (build_model(p).translator.blocks[0] for p in ("poolformer", "poolformer-openstl"))
    assert isinstance(paper.norm1, torch.nn.BatchNorm2d) and hasattr(paper.mlp, "dwconv")
    assert torch.all(paper.ls1 == 1e-2)
    assert isinstance(openstl.norm1, torch.nn.GroupNorm) and openstl.norm1.num_groups == 1
    assert isinstance(openstl.norm2, torch.nn.GroupNorm) and not hasattr(openstl.mlp, "dwconv")
    assert torch.all(openstl.ls1 == 1e-5) and torch.all(openstl.ls2 == 1e-5)
    for conv in (openstl.mlp.fc1, openstl.mlp.fc2):  # trunc-normal 0.02, zero bias
        assert conv.weight.std().item() == pytest.approx(0.02, rel=0.05) and torch.all(conv.bias == 0)
    assert openstl.resize.weight.abs().max() <= default_bound(openstl.resize)  # PyTorch's default init


def test_encoder_convs_use_truncated_normal_002():
    conv = build_model("simvpv2").encoder.blocks[1].conv
    assert abs(conv.weight.std().item() - 0.02) < 0.002
    assert torch.all(conv.bias == 0)


def test_starrelu_has_learnable_scalars_and_computes_s_relu_squared_plus_b():
    act = StarReLU()
    params = dict(act.named_parameters())
    assert {k: v.item() for k, v in params.items()} == {"scale": 1.0, "bias": 0.0}
    assert all(p.numel() == 1 and p.requires_grad for p in params.values())
    with torch.no_grad():
        act.scale.fill_(2.0)
        act.bias.fill_(-0.5)
    x = torch.tensor([-2.0, -0.1, 0.0, 0.5, 3.0])
    expected = torch.tensor([-0.5, -0.5, -0.5, 2 * 0.25 - 0.5, 2 * 9.0 - 0.5])
    torch.testing.assert_close(act(x), expected)


def test_channels_last_and_bf16_autocast_agree_with_float32():
    torch.manual_seed(0)
    model = build_model("simvpv2", act="starrelu", **TINY).eval()
    x = torch.rand(2, 10, 1, 32, 32)
    with torch.no_grad():
        reference = model(x)
        model = model.to(memory_format=torch.channels_last)
        torch.testing.assert_close(model(x), reference, atol=1e-4, rtol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert (low.float() - reference).abs().max() < 0.1 * reference.abs().max()


@pytest.mark.parametrize("translator", TRANSLATORS)
def test_compiles_as_one_graph_with_autocast(translator):
    torch._dynamo.reset()
    model = build_model("simvpv2", translator=translator, act="starrelu", drop_path=0.1, **TINY)
    compiled = torch.compile(model.to(memory_format=torch.channels_last), backend="eager", fullgraph=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = compiled(torch.rand(2, 10, 1, 32, 32))
    y.float().mean().backward()
    assert y.shape == (2, 10, 1, 32, 32)
    torch._dynamo.reset()


def test_overrides_replace_preset_fields():
    cfg = resolve_model_config("simvpv2-l", act="starrelu", drop_path=0.1)
    assert (cfg.translator, cfg.n_t, cfg.c_s, cfg.c_t) == ("gsta", 8, 64, 512)
    assert (cfg.act, cfg.drop_path) == ("starrelu", 0.1)
    assert PRESETS["simvpv2-l"].act == "gelu"  # the registry is untouched


@pytest.mark.parametrize("preset,overrides,fragments", [
    ("resnet", {}, list(PRESETS)),
    ("simvpv2", {"depth": 3}, ["depth", *MODEL_FIELDS]),
    ("simvpv2", {"translator": "lstm"}, list(TRANSLATORS)),
    ("simvpv2", {"act": "relu"}, list(ACTIVATIONS)),
    ("incepu", {"n_t": 1}, ["incepu", "n_t >= 2"]),
    ("simvpv2", {"n_s": 0}, ["n_s", ">= 1"]),
    ("simvpv2", {"c_t": 0}, ["c_t", ">= 1"]),
    ("simvpv2", {"c_s": 7}, ["c_s must be even"]),
    ("simvpv2", {"in_shape": (10, 1, 66, 66)}, ["66x66", "divisible by 4"]),
    ("simvpv2", {"drop_path": 1.0}, ["drop_path", "[0, 1)"]),
    ("simvpv2", {"mlp_ratio": 0.0}, ["mlp_ratio"]),
])
def test_bad_inputs_raise_value_errors_that_say_how_to_fix_them(preset, overrides, fragments):
    with pytest.raises(ValueError) as err:
        build_model(preset, **overrides)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_odd_n_s_needs_only_its_own_downsampling():
    # n_s=3 downsamples once, so 66x66 frames (divisible by 2, not 4) are fine
    cfg = resolve_model_config("simvpv2", n_s=3, in_shape=(10, 1, 66, 66))
    assert cfg.n_s == 3


def test_model_config_validates_on_direct_construction():
    with pytest.raises(ValueError, match="incepu needs n_t >= 2"):
        ModelConfig("incepu", n_s=4, n_t=1, c_s=32, c_t=256)
