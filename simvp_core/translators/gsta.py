"""gSTA, SimVPv2's translator: MetaFormer blocks whose mixer is gated large-kernel attention."""

from simvp_core.translators import PAPER_SIZE, Translator, metaformer

TRANSLATOR = Translator(
    name="gsta",
    network=f"{__name__}_net",
    # paper Table 5; "-L" doubles N_t, C_s and C_t
    presets={"simvpv2": PAPER_SIZE, "simvpv2-l": {"n_s": 4, "n_t": 8, "c_s": 64, "c_t": 512}},
    read_sizes=metaformer.read_sizes,
    openstl="gSTA",
    openstl_rules=metaformer.BLOCK_RULES + metaformer.MIX_MLP_RULES + metaformer.ATTENTION_RULES,
)
