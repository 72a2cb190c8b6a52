"""The architecture diagrams say true things: every code name they print exists in vitnb (or on the model or
block it names), the equations (1) to (4) are on them, the sizes printed are the config's, and the README's
SVG is the one tools/make_docs_figures.py draws, byte for byte."""

import dataclasses
import importlib
import importlib.util
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.patches import Circle
from matplotlib.text import Text

import vitnb
from vitnb import VisionTransformer, plotting, preset
from vitnb.config import NORM_PLACEMENTS, ViTConfig
from vitnb.encoder import Block
from vitnb.errors import UsageError
from vitnb.plotting.diagrams import DIAGRAM_COLORS, EQUATIONS

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "paper": None,  # the paper's ViT in symbols
    "cpu": preset("cpu"),  # class token, learned positions
    "series": preset("cpu_small"),  # average pooling, sin-cos positions
    "odd": ViTConfig(
        img_size=32,
        patch_size=8,
        in_chans=3,
        num_classes=7,
        embed_dim=48,
        depth=2,
        num_heads=2,
        mlp_ratio=3.0,
        class_token=False,
        global_pool="avg",
        pos_embed="none",
    ),
}


def texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def resolve(dotted: str):
    """The object `vitnb.a.b.C.d` names: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)  # AttributeError: a stale name
        return obj
    raise ModuleNotFoundError(dotted)


VITNB_NAME = re.compile(r"\bvitnb(?:\.\w+)+")
ATTRIBUTE = re.compile(r"(?<![\w.])(model|block)\.(\w+)")  # model.head, not vitnb.model.X


def image_for(cfg):
    return None if cfg is None else torch.rand(cfg.in_chans, cfg.img_size, cfg.img_size)


def test_resolve_finds_real_names_and_rejects_stale_ones():
    assert resolve("vitnb.encoder.Block") is Block
    assert resolve("vitnb.model.VisionTransformer.forward_head") is VisionTransformer.forward_head
    with pytest.raises(AttributeError):
        resolve("vitnb.encoder.Blok")


@pytest.mark.parametrize("name", CONFIGS)
def test_every_code_name_on_the_architecture_exists(name):
    cfg = CONFIGS[name]
    fig = plotting.plot_vit_architecture(cfg, image_for(cfg))
    shown = "\n".join(texts(fig))
    plt.close(fig)
    dotted = set(VITNB_NAME.findall(shown))
    assert {
        "vitnb.patches.PatchEmbed",
        "vitnb.encoder.Block",
        "vitnb.attention.Attention",
        "vitnb.encoder.Mlp",
    } <= dotted
    for full_name in dotted:
        resolve(full_name)
    model = VisionTransformer(cfg or ViTConfig())
    block = model.blocks[0]
    attributes = ATTRIBUTE.findall(shown)
    assert {("model", "head"), ("block", "attn"), ("block", "mlp"), ("block", "norm1"), ("block", "norm2")} <= set(
        attributes
    )
    for owner, attribute in attributes:
        value = getattr(model if owner == "model" else block, attribute)  # AttributeError: a stale name
        assert value is not None, f"{owner}.{attribute} is None for this config, yet the diagram shows it"
        assert not isinstance(value, torch.nn.Identity), f"{owner}.{attribute} does nothing for this config"


@pytest.mark.parametrize("name", CONFIGS)
def test_the_architecture_shows_the_four_equations(name):
    cfg = CONFIGS[name]
    fig = plotting.plot_vit_architecture(cfg, image_for(cfg))
    shown = texts(fig)
    plt.close(fig)
    joined = "\n".join(shown)
    for number in (1, 2, 3, 4):
        assert re.search(rf"\({number}\)|\(\d\), \({number}\)", joined), f"equation ({number}) is not labelled"
    assert EQUATIONS[2] in shown and EQUATIONS[3] in shown  # the block's two branches, written out
    pooled_by_token = (cfg or ViTConfig()).global_pool == "token"
    assert (EQUATIONS[4] in joined) == pooled_by_token  # y = LN(z_L^0) only where the class token is read
    assert (EQUATIONS[1] in joined) == (cfg or ViTConfig()).class_token  # x_class only where there is one


@pytest.mark.parametrize("name", ["cpu", "series", "odd"])
def test_the_sizes_shown_are_the_configs(name):
    cfg = CONFIGS[name]
    fig = plotting.plot_vit_architecture(cfg, image_for(cfg))
    joined = "\n".join(texts(fig))
    plt.close(fig)
    expected = {
        "N": cfg.num_patches,
        "P": cfg.patch_size,
        "D": cfg.embed_dim,
        "L": cfg.depth,
        "h": cfg.num_heads,
        "K": cfg.num_classes,
        "D/h": cfg.embed_dim // cfg.num_heads,
    }
    for symbol, value in expected.items():
        found = {int(v) for v in re.findall(rf"(?<![\w/]){re.escape(symbol)} = (\d+)", joined)}
        assert found == {value}, f"{symbol}: the diagram shows {found}, the config has {value}"
    hidden = int(cfg.embed_dim * cfg.mlp_ratio)
    assert f"{cfg.embed_dim} → {hidden} → {cfg.embed_dim}" in joined  # the MLP's widths
    assert f"block {cfg.depth - 1}" in joined  # the last block, numbered from 0
    assert "block 0" in joined


def test_the_paper_variant_prints_symbols_not_numbers():
    fig = plotting.plot_vit_architecture()
    joined = "\n".join(texts(fig))
    plt.close(fig)
    assert not re.search(r"\b[NDLhK] = \d", joined)
    assert "block L−1" in joined and "model.blocks[0] … [L−1]" in joined


def test_the_compact_variant_is_smaller_and_has_no_code_names():
    full, compact = plotting.plot_vit_architecture(), plotting.plot_vit_architecture(compact=True)
    full_texts, compact_texts = texts(full), texts(compact)
    assert compact.get_size_inches()[0] < full.get_size_inches()[0]
    assert len(compact_texts) < len(full_texts)
    joined = "\n".join(compact_texts)
    assert not VITNB_NAME.search(joined) and not ATTRIBUTE.search(joined)
    for number in (1, 2, 3, 4):
        assert f"({number})" in compact_texts
    for part in ("Linear projection of flattened patches  $E$", "Transformer encoder", "LayerNorm", "Linear head"):
        assert part in compact_texts
    plt.close(full)
    plt.close(compact)


def test_an_image_of_another_size_is_a_usage_error():
    with pytest.raises(UsageError, match="img_size"):
        plotting.plot_vit_architecture(preset("cpu"), torch.rand(1, 32, 32))


def residual_nodes(fig) -> int:
    """The ⊕ of the residual connections: white circles with the residual stream's colour as edge."""
    colour = DIAGRAM_COLORS["residual"]
    return sum(
        1
        for c in fig.findobj(Circle)
        if c.get_facecolor()[:3] == (1.0, 1.0, 1.0)
        and tuple(c.get_edgecolor()) == plt.matplotlib.colors.to_rgba(colour)
    )


def test_the_encoder_blocks_figure_shows_pre_and_post_norm():
    fig = plotting.plot_encoder_blocks()
    shown = texts(fig)
    joined = "\n".join(shown)
    assert "pre-norm (ViT)" in shown and "post-norm (original Transformer)" in shown
    for norm in ("pre", "post"):
        assert f'vitnb.encoder.Block(..., norm="{norm}")' in shown
        assert norm in NORM_PLACEMENTS and "norm" in {f.name for f in dataclasses.fields(ViTConfig)}
    assert r"\mathrm{LN}(x + \mathrm{MSA}(x))" in joined and r"x + \mathrm{MSA}(\mathrm{LN}(x))" in joined
    assert shown.count("LayerNorm") == 4 and shown.count("MLP") == 2  # two blocks, each with two LayerNorms
    assert residual_nodes(fig) == 4  # each block: two residual connections
    assert shown.count("on the stream") == 2  # post-norm's two LayerNorms sit on the residual stream
    block = Block(8, 2)
    for attribute in re.findall(r"(?<![\w.])block\.(\w+)", joined):
        assert hasattr(block, attribute)
    for name in VITNB_NAME.findall(joined):
        resolve(name)
    plt.close(fig)


def test_the_two_figures_share_their_colours():
    arch, blocks = plotting.plot_vit_architecture(), plotting.plot_encoder_blocks()

    def box_colours(fig, label):  # the face colour of the boxes whose text is `label`
        colours = set()
        for t in fig.findobj(Text):
            if t.get_text() == label:
                for patch in t.axes.patches:
                    if patch.contains_point(t.axes.transData.transform(t.get_position())):
                        colours.add(tuple(patch.get_facecolor()))
        return colours - {tuple(plt.matplotlib.colors.to_rgba(DIAGRAM_COLORS["frame"]))}

    for label, kind in (("LayerNorm", "norm"), ("MLP", "mlp")):
        wanted = {plt.matplotlib.colors.to_rgba(DIAGRAM_COLORS[kind])}
        assert box_colours(arch, label) == wanted and box_colours(blocks, label) == wanted
    plt.close(arch)
    plt.close(blocks)


def load_tool():
    spec = importlib.util.spec_from_file_location("make_docs_figures", ROOT / "tools" / "make_docs_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_svg_is_deterministic_and_up_to_date(tmp_path):
    tool = load_tool()
    first, second = tool.write_architecture(tmp_path / "a.svg"), tool.write_architecture(tmp_path / "b.svg")
    assert first.read_bytes() == second.read_bytes()
    committed = ROOT / "docs" / "vit_architecture.svg"
    assert committed.read_bytes() == first.read_bytes(), (
        "docs/vit_architecture.svg differs from what the code draws: run .venv/bin/python tools/make_docs_figures.py"
    )


def test_the_diagrams_are_exported():
    assert {"plot_vit_architecture", "plot_encoder_blocks"} <= set(plotting.__all__)
    assert vitnb.plotting.plot_vit_architecture is plotting.diagrams.plot_vit_architecture
