"""TAU: gSTA's large-kernel attention with a squeeze-excitation gate, initialised as OpenSTL does."""

from simvp_core.translators import PAPER_SIZE, Translator, metaformer

TRANSLATOR = Translator(
    name="tau",
    network=f"{__name__}_net",
    presets={"tau": PAPER_SIZE},
    read_sizes=metaformer.read_sizes,
    openstl="tau",
    openstl_rules=metaformer.BLOCK_RULES + metaformer.MIX_MLP_RULES + metaformer.ATTENTION_RULES + (
        ("translator.blocks.{i}.mixer.gate.0.", "hid.enc.{i}.block.attn.spatial_gating_unit.fc.0."),
        ("translator.blocks.{i}.mixer.gate.2.", "hid.enc.{i}.block.attn.spatial_gating_unit.fc.2."),
    ),
)
