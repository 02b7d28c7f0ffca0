"""What the MetaFormer translators (gsta, tau, poolformer, poolformer-openstl) share, without torch:
the OpenSTL names of a block's parts and how to read a block stack's sizes off its weights.

OpenSTL keeps a block's mixer under `attn` and its width change beside the block (`reduction`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from simvp_core.translators import Rules, count_blocks, weight_shape

# every MetaFormer block: norms, layer scales, the MLP's two ends, the width change
BLOCK_RULES: Rules = (
    ("translator.blocks.{i}.ls1", "hid.enc.{i}.block.layer_scale_1"),
    ("translator.blocks.{i}.ls2", "hid.enc.{i}.block.layer_scale_2"),
    ("translator.blocks.{i}.norm1.", "hid.enc.{i}.block.norm1."),
    ("translator.blocks.{i}.norm2.", "hid.enc.{i}.block.norm2."),
    ("translator.blocks.{i}.mlp.fc1.", "hid.enc.{i}.block.mlp.fc1."),
    ("translator.blocks.{i}.mlp.fc2.", "hid.enc.{i}.block.mlp.fc2."),
    ("translator.blocks.{i}.resize.", "hid.enc.{i}.reduction."),
)
# the depthwise conv of the MLP gsta, tau and the paper's PoolFormer use (MixMlp)
MIX_MLP_RULES: Rules = (("translator.blocks.{i}.mlp.dwconv.", "hid.enc.{i}.block.mlp.dwconv.dwconv."),)
# the large-kernel attention of gsta and tau: 1x1 in, three convs (the kernel), 1x1 out
ATTENTION_RULES: Rules = (
    ("translator.blocks.{i}.mixer.proj_in.", "hid.enc.{i}.block.attn.proj_1."),
    ("translator.blocks.{i}.mixer.large_kernel.0.", "hid.enc.{i}.block.attn.spatial_gating_unit.conv0."),
    ("translator.blocks.{i}.mixer.large_kernel.1.", "hid.enc.{i}.block.attn.spatial_gating_unit.conv_spatial."),
    ("translator.blocks.{i}.mixer.large_kernel.2.", "hid.enc.{i}.block.attn.spatial_gating_unit.conv1."),
    ("translator.blocks.{i}.mixer.proj_out.", "hid.enc.{i}.block.attn.proj_2."),
)


def read_sizes(state: Mapping[str, Any]) -> dict[str, Any]:
    """Width, n_t, mlp_ratio and (with two blocks or more) c_t of a MetaFormer block stack."""
    n_t = count_blocks(state, "translator.blocks.")
    width = weight_shape(state, "translator.blocks.0.norm1.weight")[0]
    sizes = {"width": width, "n_t": n_t,
             "mlp_ratio": weight_shape(state, "translator.blocks.0.mlp.fc1.weight")[0] / width}
    if n_t > 1:  # a single block goes from width to width: C_t leaves no trace
        sizes["c_t"] = weight_shape(state, "translator.blocks.1.norm1.weight")[0]
    return sizes
