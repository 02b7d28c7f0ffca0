"""The translator registry: declarations found without torch, a new translator from its own two
modules alone, each translator's OpenSTL names complete, and each recognised from its weights."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from simvp_core import convert
from simvp_core.models import PRESETS, TRANSLATORS, SimVP, build_model
from simvp_core.presets import ModelConfig, resolve_model_config
from simvp_core.translators import discover, registry

REPO = Path(__file__).resolve().parents[2]
TINY = {"c_s": 4, "c_t": 16, "n_t": 3, "n_s": 2}


def test_the_config_reads_every_translator_and_preset_without_importing_torch() -> None:
    probe = ("import sys\nfrom simvp_core.config import TrainConfig\nfrom simvp_core.presets import PRESETS\n"
             "print(len(PRESETS), sorted(m for m in sys.modules if m == 'torch' or m.endswith('_net')))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(len(PRESETS)), "[]"]


def test_presets_and_names_come_from_the_declarations() -> None:
    assert TRANSLATORS == tuple(registry())
    assert {name: cfg.translator for name, cfg in PRESETS.items()} == {
        preset: t.name for t in registry().values() for preset in t.presets}
    assert convert.OPENSTL_MODEL_TYPES == {"gsta": "gSTA", "incepu": "IncepU", "poolformer-openstl": "poolformer",
                                           "tau": "tau"}


NEW_DECLARATION = '''
    from simvp_core.translators import Translator

    def check(cfg):
        if cfg.c_t != cfg.width:
            raise ValueError(f"translator plain needs c_t == T * c_s, got c_t={cfg.c_t}")

    TRANSLATOR = Translator(name="plain", network=__name__ + "_net", presets={"plain-s": {"n_s": 2, "n_t": 1,
                            "c_s": 4, "c_t": 40}}, read_sizes=lambda state: {}, check=check)
'''
NEW_NETWORK = '''
    from torch import nn

    def build(cfg):
        return nn.Conv2d(cfg.width, cfg.width, 1)
'''


@pytest.fixture()
def new_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A package holding one new translator's two modules, as a contributor would add them."""
    package = tmp_path / "more_translators"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "plain.py").write_text(textwrap.dedent(NEW_DECLARATION))
    (package / "plain_net.py").write_text(textwrap.dedent(NEW_NETWORK))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield package.name
    for name in [m for m in sys.modules if m.startswith(package.name)]:
        del sys.modules[name]


def test_a_new_translator_is_its_declaration_and_its_network_found_without_building(new_package: str) -> None:
    (plain,) = discover(new_package).values()
    assert plain.name == "plain" and f"{new_package}.plain_net" not in sys.modules  # not built yet
    cfg = ModelConfig("gsta", n_s=2, n_t=1, c_s=4, c_t=40)
    net = plain.build(cfg)
    assert f"{new_package}.plain_net" in sys.modules and net(torch.zeros(1, 40, 8, 8)).shape == (1, 40, 8, 8)
    with pytest.raises(ValueError, match="plain needs c_t == T"):
        plain.check(ModelConfig("gsta", n_s=2, n_t=1, c_s=4, c_t=8))


def test_a_name_declared_twice_is_refused_naming_both_modules(new_package: str, tmp_path: Path) -> None:
    (tmp_path / new_package / "plain2.py").write_text(textwrap.dedent(NEW_DECLARATION).replace(
        '"plain-s"', '"plain-m"'))
    with pytest.raises(RuntimeError, match=rf"{new_package}.plain2: translator 'plain' is already "
                                           rf"declared by {new_package}.plain;"):
        discover(new_package)


@pytest.mark.parametrize("translator", TRANSLATORS)
def test_each_translators_own_rules_name_all_its_weights_in_openstl(translator: str) -> None:
    own = registry()[translator].openstl_rules
    with torch.device("meta"):
        keys = [k for k in build_model("simvpv2", translator=translator, **TINY).state_dict()
                if k.startswith("translator.")]
    unnamed = [k for k in keys if not any(convert._pattern(ours).match(k) for ours, _ in own)]
    assert keys and not unnamed


def shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def buildable(translator: str, n_t: int) -> bool:
    """Whether the translator takes n_t blocks (incepu needs two or more)."""
    try:
        resolve_model_config("simvpv2", translator=translator, **{**TINY, "n_t": n_t})
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("translator,n_t", [(t, n) for t in TRANSLATORS for n in (1, 3) if buildable(t, n)])
def test_each_translator_is_recognised_from_its_weights(translator: str, n_t: int) -> None:
    with torch.device("meta"):
        model = build_model("simvpv2", translator=translator, **{**TINY, "n_t": n_t})
        inferred = convert.infer_config(model.state_dict())
        assert inferred.translator == translator and shapes(SimVP(inferred)) == shapes(model)
