"""OpenSTL's PoolFormer, beside the paper's so that both published PoolFormer rows can be
reproduced: GroupNorm(1), a plain MLP and layer scale 1e-5."""

from simvp_core.translators import PAPER_SIZE, Translator, metaformer

TRANSLATOR = Translator(
    name="poolformer-openstl",
    network=f"{__name__}_net",
    presets={"poolformer-openstl": PAPER_SIZE},
    read_sizes=metaformer.read_sizes,
    openstl="poolformer",
    openstl_rules=metaformer.BLOCK_RULES,
)
