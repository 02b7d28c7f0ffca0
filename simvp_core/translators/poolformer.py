"""The paper's PoolFormer (its notebook variant): average pooling as the mixer, MixMlp, BatchNorm.

OpenSTL has no such model (its PoolFormer is `poolformer-openstl`); the names still map, so a state
dict converts both ways, but no OpenSTL model loads it.
"""

from simvp_core.translators import PAPER_SIZE, Translator, metaformer

TRANSLATOR = Translator(
    name="poolformer",
    network=f"{__name__}_net",
    presets={"poolformer": PAPER_SIZE},
    read_sizes=metaformer.read_sizes,
    openstl_instead="poolformer-openstl",
    openstl_rules=metaformer.BLOCK_RULES + metaformer.MIX_MLP_RULES,
)
