"""Diagrams of the architecture, drawn with matplotlib: the whole ViT as in Figure 1 of the ViT paper, and an
encoder block with its LayerNorms before (pre-norm) or after (post-norm) each residual branch.

    plot_vit_architecture(preset("cpu"), image)   # sizes of the config, patches of the image
    plot_vit_architecture(compact=True)           # the README's figure: symbols, no code names
    plot_encoder_blocks()                         # pre-norm and post-norm side by side

Both figures use one colour per kind of part (`DIAGRAM_COLORS`) and draw the residual stream, the path that
the additions carry from a block's input to its output, as a thick line of its own colour. The code names
printed on the diagram (`vitnb.encoder.Block`, `model.head`, `block.norm1`, ...) are the package's own;
tests/test_diagrams.py resolves every one of them, so a renamed module cannot leave a stale label behind.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import cbook
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyBboxPatch

from ..config import ViTConfig
from ..errors import UsageError
from .render import display_image

__all__ = ["DIAGRAM_COLORS", "EQUATIONS", "plot_encoder_blocks", "plot_vit_architecture"]

DIAGRAM_COLORS = {
    "patch": "#f9c6d3",  # patches and their linear projection E (pink, as in the paper's Figure 1)
    "position": "#d9ccf5",  # position embeddings (purple)
    "class": "#fbd9a6",  # the class token
    "norm": "#fdeaa0",  # LayerNorm
    "attention": "#b9e6c9",  # multi-head self-attention
    "mlp": "#bcd6f5",  # the MLP
    "head": "#f6b8a8",  # the linear head
    "frame": "#f1f2f4",  # the frames of the encoder and of the block drawn large
    "residual": "#b23a48",  # the residual stream
    "flow": "#3b3b3b",  # every other arrow
    "edge": "#4a4a4a",  # box outlines
    "code": "#1f4e8c",  # code names
    "note": "#555555",  # sizes and remarks
}
_C = DIAGRAM_COLORS
_MONO = "DejaVu Sans Mono"
_STREAM_LW, _FLOW_LW = 2.4, 1.2

EQUATIONS = {  # the ViT paper's equations (1) to (4), in the notation of notebook 04
    1: r"$z_0 = [\,x_\mathrm{class};\, x_p^1 E;\, \ldots;\, x_p^N E\,] + E_\mathrm{pos}$",
    2: r"$z'_\ell = \mathrm{MSA}(\mathrm{LN}(z_{\ell-1})) + z_{\ell-1}$",
    3: r"$z_\ell = \mathrm{MLP}(\mathrm{LN}(z'_\ell)) + z'_\ell$",
    4: r"$y = \mathrm{LN}(z_L^0)$",
}
_EQ1_NO_CLASS = r"$z_0 = [\,x_p^1 E;\, \ldots;\, x_p^N E\,] + E_\mathrm{pos}$"  # (1) without a class token
_EQ4_AVG = r"$y = \mathrm{LN}(\mathrm{mean}_i\, z_L^i)$"  # (4) with average pooling in place of the class token


# --- drawing primitives ----------------------------------------------------------------------------
def _box(ax: Axes, x, y, w, h, text, color, *, fontsize=9.0, code=None, code_size=7.5, weight="normal"):
    """A rounded box with `text` in its centre, and `code` (a code name) under the text."""
    ax.add_patch(
        FancyBboxPatch(
            (x, y), w, h, boxstyle="round,pad=0,rounding_size=0.08", fc=color, ec=_C["edge"], lw=1.0, zorder=3
        )
    )
    lines = text.count("\n") + 1
    text_y = y + h / 2 if code is None else y + h / 2 + 0.1 * lines
    ax.text(
        x + w / 2, text_y, text, ha="center", va="center", fontsize=fontsize, weight=weight, zorder=4, linespacing=1.05
    )
    if code is not None:
        code_y = text_y - 0.11 * lines - 0.2
        ax.text(
            x + w / 2,
            code_y,
            code,
            ha="center",
            va="center",
            fontsize=code_size,
            color=_C["code"],
            family=_MONO,
            zorder=4,
        )


def _arrow(ax: Axes, start, end, *, color=None, lw=_FLOW_LW, style="-|>"):
    props = dict(
        arrowstyle=f"{style},head_length=0.45,head_width=0.22" if style != "-" else "-",
        color=color or _C["flow"],
        lw=lw,
        shrinkA=0,
        shrinkB=0,
    )
    ax.annotate("", xy=end, xytext=start, arrowprops=props, zorder=2)


def _line(ax: Axes, xs, ys, *, color=None, lw=_FLOW_LW, zorder=2, **kwargs):
    ax.plot(
        xs,
        ys,
        color=color or _C["flow"],
        lw=lw,
        solid_capstyle="butt",
        solid_joinstyle="round",
        zorder=zorder,
        **kwargs,
    )


def _add_node(ax: Axes, x, y, r=0.16):
    """The ⊕ of a residual connection."""
    ax.add_patch(Circle((x, y), r, fc="white", ec=_C["residual"], lw=1.6, zorder=4))
    _line(ax, [x - r * 0.6, x + r * 0.6], [y, y], color=_C["residual"], lw=1.4, zorder=5)
    _line(ax, [x, x], [y - r * 0.6, y + r * 0.6], color=_C["residual"], lw=1.4, zorder=5)


def _text(ax: Axes, x, y, text, *, size=9.0, ha="left", va="center", **kwargs):
    ax.text(x, y, text, ha=ha, va=va, fontsize=size, zorder=4, **kwargs)


def _code(ax: Axes, x, y, text, *, size=7.5, ha="left", va="center"):
    ax.text(x, y, text, ha=ha, va=va, fontsize=size, color=_C["code"], family=_MONO, zorder=4)


def _frame(ax: Axes, x0, y0, x1, y1):
    ax.add_patch(
        FancyBboxPatch(
            (x0, y0),
            x1 - x0,
            y1 - y0,
            boxstyle="round,pad=0,rounding_size=0.15",
            fc=_C["frame"],
            ec=_C["edge"],
            lw=1.2,
            zorder=1,
        )
    )


def _canvas(width: float, height: float, unit: float) -> tuple[Figure, Axes]:
    """A figure of `width` x `height` data units (`unit` inches each) with one frameless axes filling it."""
    fig = plt.figure(figsize=(width * unit, height * unit), dpi=100)  # sharper than the notebooks' 80 dpi
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.set_axis_off()
    return fig, ax


# --- one encoder block -----------------------------------------------------------------------------
_MSA_LABEL = "Multi-head\nself-attention"
_BLOCK_STEPS = {  # bottom to top: a box (kind, label, attribute of vitnb.encoder.Block), a split or the ⊕
    "pre": [("split",), ("norm", "LayerNorm", "norm1"), ("attention", _MSA_LABEL, "attn"), ("add",),
            ("split",), ("norm", "LayerNorm", "norm2"), ("mlp", "MLP", "mlp"), ("add",)],
    "post": [("split",), ("attention", _MSA_LABEL, "attn"), ("add",), ("norm", "LayerNorm", "norm1"),
             ("split",), ("mlp", "MLP", "mlp"), ("add",), ("norm", "LayerNorm", "norm2")],
}  # fmt: skip
_HEIGHT = {"split": 0.32, "add": 0.62, "norm": 0.62, "attention": 0.95, "mlp": 0.72}
_GAP, _STUB, _R = 0.3, 0.45, 0.16


def _block_height(norm: str, scale: float = 1.0) -> float:
    """The height `_draw_block` needs from the foot of its input arrow to the tip of its output arrow."""
    boxes = sum(_HEIGHT[s[0]] + (0 if s[0] in ("split", "add") else _GAP) for s in _BLOCK_STEPS[norm])
    return scale * (boxes + 2 * _STUB)


def _draw_block(ax: Axes, xc: float, y0: float, norm: str, *, width=2.4, code=False, scale=1.0) -> dict:
    """An encoder block on the vertical line x = `xc`, from its input at y = `y0` upwards.

    The residual stream (thick) runs up the main line and around each branch through a bypass on the left into
    the ⊕; the branch (thin) goes through the boxes. With `code` each box names the `vitnb.encoder.Block`
    attribute that computes it. Returns where things are: each branch's (split, ⊕) heights, the LayerNorms'
    heights, the top of the output arrow and the x of the bypass. `scale` stretches every height.
    """
    heights, gap, stub = {k: v * scale for k, v in _HEIGHT.items()}, _GAP * scale, _STUB * scale
    bypass = xc - width / 2 - 0.42
    _line(ax, [xc, xc], [y0, y0 + stub], color=_C["residual"], lw=_STREAM_LW)
    y, stream, split_y = y0 + stub, True, y0
    marks = {"branch": [], "norm": [], "bypass": bypass}
    for step in _BLOCK_STEPS[norm]:
        kind = step[0]
        if kind == "split":  # the branch leaves the stream here
            _line(ax, [xc, xc], [y, y + heights["split"]], color=_C["residual"], lw=_STREAM_LW)
            y += heights["split"]
            split_y, stream = y, False
            ax.add_patch(Circle((xc, y), 0.055, fc=_C["residual"], ec="none", zorder=4))
        elif kind == "add":  # the branch's output meets the bypass
            cy = y + heights["add"] - _R - 0.14
            _arrow(ax, (xc, y), (xc, cy - _R))
            _line(ax, [xc, bypass, bypass], [split_y, split_y, cy], color=_C["residual"], lw=_STREAM_LW)
            _arrow(ax, (bypass, cy), (xc - _R, cy), color=_C["residual"], lw=_STREAM_LW)
            _add_node(ax, xc, cy)
            _line(ax, [xc, xc], [cy + _R, y + heights["add"]], color=_C["residual"], lw=_STREAM_LW)
            marks["branch"].append((split_y, cy))
            y, stream = y + heights["add"], True
        else:
            _, label, attr = step
            colour, lw = (_C["residual"], _STREAM_LW) if stream else (_C["flow"], _FLOW_LW)
            _arrow(ax, (xc, y), (xc, y + gap), color=colour, lw=lw)
            y += gap
            _box(
                ax,
                xc - width / 2,
                y,
                width,
                heights[kind],
                label,
                _C[kind],
                fontsize=8.5,
                code=f"block.{attr}" if code else None,
            )
            if kind == "norm":
                marks["norm"].append(y + heights[kind] / 2)
            y += heights[kind]
    _arrow(ax, (xc, y), (xc, y + stub), color=_C["residual"], lw=_STREAM_LW)
    marks["top"] = y + stub
    return marks


# --- the whole ViT ---------------------------------------------------------------------------------
def _sample_image() -> torch.Tensor:
    """The portrait of Grace Hopper that matplotlib ships (notebook 01's photo): its centre square at 144 x 144."""
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        pixels = np.array(plt.imread(f, format="jpg"))  # (600, 512, 3) uint8
    h, w = pixels.shape[:2]
    top = (h - w) // 2  # the centre square, as in notebook 01
    square = torch.from_numpy(pixels[top : top + w]).permute(2, 0, 1).float()[None]  # (1, 3, 512, 512)
    return F.interpolate(square, size=(144, 144), mode="bilinear", antialias=True)[0].round().to(torch.uint8)


def _patches(image: torch.Tensor, grid: tuple[int, int]) -> list[np.ndarray]:
    """The image's patches as (h, w, 3) floats in [0, 1], row by row."""
    pixels = display_image(image)
    pixels = pixels.expand(3, -1, -1) if pixels.shape[0] == 1 else pixels
    (gh, gw), ph, pw = grid, pixels.shape[1] // grid[0], pixels.shape[2] // grid[1]
    return [
        pixels[:, i * ph : (i + 1) * ph, j * pw : (j + 1) * pw].permute(1, 2, 0).numpy()
        for i in range(gh)
        for j in range(gw)
    ]


def _shown_patches(n: int) -> list[int | None]:
    """Which patches the token row draws: all of up to 9, else the first two, three from the middle and the
    last, with an ellipsis (None) for each gap."""
    if n <= 9:
        return list(range(n))
    c = n // 2
    return [0, 1, None, c - 1, c, c + 1, None, n - 1]


class _Sizes:
    """How the diagram writes a size: "N = 49" for a config, the symbol "N" alone for the paper's ViT."""

    def __init__(self, cfg: ViTConfig, symbols: bool):
        self.cfg, self.symbols = cfg, symbols

    def __call__(self, symbol: str, value) -> str:
        return symbol if self.symbols else f"{symbol} = {value}"


def _draw_input(ax: Axes, image: torch.Tensor, grid: tuple[int, int], cfg: ViTConfig, size: _Sizes, full: bool):
    """The image, its patches in a row, the linear projection and the tokens with their position embeddings
    (purple, numbered as the rows of `pos_embed`). Returns the x of every drawn token (class token first)."""
    x0, x1, side, y_img, fs = _MAIN[0], _MAIN[1], 2.5, 0.55, _FS
    patches = _patches(image, grid)
    rows = [np.concatenate(patches[r * grid[1] : (r + 1) * grid[1]], axis=1) for r in range(grid[0])]
    ax.imshow(np.concatenate(rows), extent=(x0, x0 + side, y_img, y_img + side), interpolation="nearest", zorder=1)
    for k in range(1, grid[0]):
        _line(ax, [x0, x0 + side], [y_img + k * side / grid[0]] * 2, color="white", lw=0.8)
    for k in range(1, grid[1]):
        _line(ax, [x0 + k * side / grid[1]] * 2, [y_img, y_img + side], color="white", lw=0.8)
    _text(ax, x0 + side / 2, y_img - 0.3, "image", size=fs, ha="center")

    cls = cfg.class_token
    slots = ([("class", 0)] if cls else []) + [("patch", i) for i in _shown_patches(len(patches))]
    step = (x1 - x0 - side - 0.9) / len(slots)
    xs = [x0 + side + 0.9 + step * (k + 0.5) for k in range(len(slots))]
    thumb, tok_w = min(0.6, step * 0.66), min(0.4, step * 0.42)
    y_patch, y_proj, y_tok = 1.3, _Y["projection"], _Y["tokens"]
    drawn = []
    for x, (kind, i) in zip(xs, slots, strict=True):
        if i is None:  # an ellipsis for the patches not drawn
            _text(ax, x, y_patch + thumb / 2, "…", size=fs + 2, ha="center")
            _text(ax, x, y_tok + _BOX_H / 2, "…", size=fs + 2, ha="center")
            continue
        drawn.append(x)
        if kind == "patch":
            extent = (x - thumb / 2, x + thumb / 2, y_patch, y_patch + thumb)
            ax.imshow(patches[i], extent=extent, interpolation="nearest", zorder=3)
            ax.add_patch(
                FancyBboxPatch(
                    (x - thumb / 2, y_patch), thumb, thumb, boxstyle="square,pad=0", fc="none", ec=_C["edge"], lw=0.6
                )
            )
            _arrow(ax, (x, y_patch + thumb), (x, y_proj))
            _arrow(ax, (x, y_proj + _BOX_H), (x, y_tok))
        colour, mark = (_C["class"], "*") if kind == "class" else (_C["patch"], "")
        if cfg.pos_embed != "none":
            index = i + int(cls) if kind == "patch" else 0  # the token's place in the sequence
            _box(ax, x - tok_w - 0.02, y_tok, tok_w, _BOX_H, str(index), _C["position"], fontsize=fs - 2)
            _box(ax, x + 0.02, y_tok, tok_w, _BOX_H, mark, colour, fontsize=fs)
        else:
            _box(ax, x - tok_w / 2, y_tok, tok_w, _BOX_H, mark, colour, fontsize=fs)
    if cls:
        _text(ax, xs[0], y_tok - 0.12, "class\ntoken", size=fs - 2, ha="center", va="top", linespacing=1.0)

    first = xs[int(cls)]
    _arrow(ax, (x0 + side + 0.12, y_img + side / 2), (first - thumb / 2 - 0.12, y_patch + thumb / 2))
    if full and not size.symbols:
        caption = (
            f"patches, row by row ({size('N', len(patches))} of {size('P', cfg.patch_size)} x {cfg.patch_size} pixels)"
        )
    else:
        caption = "patches, flattened, row by row" if full else "patches"
    _text(ax, (first + x1) / 2, y_patch - 0.3, caption, size=fs - 1, ha="center")
    title = "Linear projection of flattened patches  $E$"
    _box(ax, first - 0.45, y_proj, x1 - first + 0.45, _BOX_H, title, _C["patch"], fontsize=fs)
    return drawn


def _draw_encoder(ax: Axes, cfg: ViTConfig, size: _Sizes, xs: list[float]) -> float:
    """The encoder: blocks 0 .. L-1, each a strip of its parts in the colours of the block drawn large, fed by
    the tokens at `xs`. Returns the height of block 0's strip, where the arrow to the block drawn large starts."""
    left, right, bottom, top, fs = _ENCODER_LEFT, _MAIN[1], _Y["encoder"], _Y["encoder_top"], _FS
    for x in xs:
        _arrow(ax, (x, _Y["tokens"] + _BOX_H), (x, bottom))
    _frame(ax, left, bottom, right, top)
    _text(ax, left + 0.25, top - 0.35, "Transformer encoder", size=fs + 0.5, weight="bold")
    _text(ax, right - 0.25, top - 0.35, f"{size('L', cfg.depth)} blocks", size=fs, ha="right")
    if size.symbols or cfg.depth > 3:
        names = ["block 0", "block 1", "⋮", "block L−1" if size.symbols else f"block {cfg.depth - 1}"]
    else:
        names = [f"block {b}" for b in range(cfg.depth)]
    strip = [("norm", 1.0, "LN"), ("attention", 2.2, "MSA"), ("norm", 1.0, "LN"), ("mlp", 2.2, "MLP")]
    strip_left, y = left + 1.75, bottom + 2.35
    unit = (right - 0.3 - strip_left) / sum(w for _, w, _ in strip)
    for name in names:
        if name == "⋮":
            _text(ax, left + 0.6, y + 0.35, "⋮", size=fs + 2, ha="center")
            y -= 0.55
            continue
        _text(ax, left + 0.25, y + 0.22, name, size=fs - 0.5)
        x = strip_left
        for kind, w, short in strip:
            ax.add_patch(
                FancyBboxPatch(
                    (x + 0.03, y), w * unit - 0.06, 0.44, boxstyle="round,pad=0,rounding_size=0.06", fc=_C[kind],
                    ec=_C["edge"], lw=0.7, zorder=3,
                )
            )  # fmt: skip
            _text(ax, x + w * unit / 2, y + 0.22, short, size=fs - 2.5, ha="center", color=_C["note"])
            x += w * unit
        y -= 0.75
    return bottom + 2.35 + 0.22


def _draw_output(ax: Axes, cfg: ViTConfig, size: _Sizes, xs: list[float]) -> float:
    """Pooling (the class token's final state, or the mean of the patch tokens), the final LayerNorm, the head
    and the class scores. Returns the x of the column."""
    fs, y_norm, y_head = _FS, _Y["norm"], _Y["head"]
    if cfg.class_token:
        x = xs[0]
        _arrow(ax, (x, _Y["encoder_top"]), (x, y_norm))
        _text(ax, x + 0.15, (_Y["encoder_top"] + y_norm) / 2, "$z_L^0$", size=fs)
    else:
        x = (xs[0] + xs[-1]) / 2
        for token_x in xs:
            _line(ax, [token_x, x], [_Y["encoder_top"], y_norm - 0.3], lw=0.8)
        _arrow(ax, (x, y_norm - 0.3), (x, y_norm))
        _text(ax, x + 1.6, y_norm - 0.2, "mean of the patch tokens", size=fs - 1.5)
    _box(ax, x - _HEAD_W / 2, y_norm, _HEAD_W, _BOX_H, "LayerNorm", _C["norm"], fontsize=fs)
    _arrow(ax, (x, y_norm + _BOX_H), (x, y_head))
    _box(ax, x - _HEAD_W / 2, y_head, _HEAD_W, _BOX_H, "Linear head", _C["head"], fontsize=fs)
    _arrow(ax, (x, y_head + _BOX_H), (x, _Y["scores"] - 0.22))
    _text(ax, x, _Y["scores"], f"class scores ({size('K', cfg.num_classes)})", size=fs, ha="center")
    return x


def _draw_zoom(ax: Axes, cfg: ViTConfig, size: _Sizes, left: float, right: float, top: float, full: bool) -> None:
    """One block drawn large inside a frame from x = `left` to `right`, with the equations of its branches."""
    fs, y0 = _FS, 1.2
    xc = left + 1.0 + 1.3  # bypass margin + half a box
    scale = (top - 0.95 - y0) / _block_height("pre")
    out = y0 + _block_height("pre", scale)
    _frame(ax, left, 0.45, right, top)
    title = "block ℓ−1 computes $z_\\ell$ from $z_{\\ell-1}$" if full else "one block"
    _text(ax, (left + right) / 2, out + 0.62, title, size=fs + 0.5, ha="center", weight="bold")
    marks = _draw_block(ax, xc, y0, "pre", width=2.6, code=full, scale=scale)
    _text(ax, xc, y0 - 0.3, "$z_{\\ell-1}$", size=fs, ha="center")
    _text(ax, xc + 0.15, out - 0.12, "$z_\\ell$", size=fs)
    heads = f"{size('h', cfg.num_heads)} heads of D/h = {cfg.embed_dim // cfg.num_heads} channels"
    widths = f"{cfg.embed_dim} → {int(cfg.embed_dim * cfg.mlp_ratio)} → {cfg.embed_dim}"
    if size.symbols:
        heads, widths = "h heads of D/h channels", "D → 4D → D"
    notes = {2: (heads, "vitnb.attention.Attention"), 3: (f"Linear, GELU, Linear: {widths}", "vitnb.encoder.Mlp")}
    bx = xc + 1.45
    for (lo, hi), number in zip(marks["branch"], (2, 3), strict=True):
        _line(ax, [bx, bx + 0.12, bx + 0.12, bx], [lo, lo, hi, hi], lw=0.9)  # a bracket over the branch
        mid = (lo + hi) / 2
        if not full:
            _text(ax, bx + 0.35, mid, f"({number})", size=fs + 0.5, weight="bold")
            continue
        _text(ax, bx + 0.35, mid + 0.42, f"({number})", size=fs, weight="bold")
        _text(ax, bx + 0.35, mid + 0.02, EQUATIONS[number], size=fs - 0.5)
        _text(ax, bx + 0.35, mid - 0.38, notes[number][0], size=fs - 1, color=_C["note"])
        _code(ax, bx + 0.35, mid - 0.72, notes[number][1])


def _label(ax: Axes, x, y, number, formula=None, codes=(), note=None) -> None:
    """An equation's number in bold; with a formula, the formula, a note on sizes and code names under it."""
    _text(ax, x, y, f"({number})", size=_FS if formula else _FS + 0.5, weight="bold")
    if formula is None:
        return
    _text(ax, x + 0.6, y, formula, size=_FS - 0.5)
    if note:
        _text(ax, x + 0.6, y - 0.4, note, size=_FS - 1, color=_C["note"])
    for k, name in enumerate(codes):
        _code(ax, x + 0.6, y - (0.74 if note else 0.4) - 0.32 * k, name)


# the plan of the architecture diagram, in its units (0.48 inch): the main column's x range, the heights
_MAIN, _ENCODER_LEFT, _HEAD_W, _BOX_H, _FS = (0.4, 10.4), 2.3, 2.9, 0.55, 9.5
_Y = {"projection": 2.65, "tokens": 3.85, "encoder": 5.15, "encoder_top": 8.65, "norm": 9.45, "head": 10.6,
      "scores": 11.8}  # fmt: skip


def plot_vit_architecture(
    cfg: ViTConfig | None = None, image: torch.Tensor | None = None, *, compact: bool = False
) -> Figure:
    """The ViT as in Figure 1 of its paper: image -> patches -> linear projection -> [class token] + position
    embeddings -> L encoder blocks -> LayerNorm -> head, with one block drawn large on the right.

    Each part carries the number of the paper's equation that defines it, (1) to (4), and the vitnb module,
    class or attribute that computes it. `cfg` (a `ViTConfig`) prints the sizes N, D, L, h and K and decides
    whether there is a class token, which position embeddings and which pooling; without it the diagram shows
    the paper's ViT in symbols, on a 3 x 3 grid of patches. `image` (C, H, W), of the config's `img_size`,
    gives the patches drawn (default: notebook 01's photo). `compact` draws a smaller figure with the parts'
    names and the equation numbers only: no formulas, sizes or code names.
    """
    paper, full = cfg is None, not compact
    cfg = ViTConfig() if paper else cfg
    if image is None:
        image = _sample_image()
    elif not paper and tuple(image.shape[-2:]) != (cfg.img_size, cfg.img_size):
        raise UsageError(
            f"the image is {tuple(image.shape[-2:])} pixels but the config's img_size is {cfg.img_size}: "
            "pass an image of the config's size, or no image"
        )
    grid = (3, 3) if paper else (cfg.grid_size, cfg.grid_size)
    size = _Sizes(cfg, symbols=paper or compact)

    # left to right: the main column, the labels of the equations, the block drawn large
    label_x = _MAIN[1] + 0.45
    zoom_left = label_x + (6.8 if full else 1.0)
    zoom_right = zoom_left + 2.3 + (6.65 if full else 2.45)
    width, height = zoom_right + 0.3, 12.4
    fig, ax = _canvas(width, height, 0.48)
    xs = _draw_input(ax, image, grid, cfg, size, full)
    block0_y = _draw_encoder(ax, cfg, size, xs)
    x_out = _draw_output(ax, cfg, size, xs)
    _draw_zoom(ax, cfg, size, zoom_left, zoom_right, height - 0.4, full)
    _arrow(ax, (_MAIN[1] - 0.25, block0_y), (zoom_left - 0.05, block0_y))  # from block 0 to the block drawn large

    y1, y4 = _Y["tokens"] + 0.65, _Y["head"] + 0.1
    if not full:
        _label(ax, label_x, y1, 1)
        _label(ax, x_out + _HEAD_W / 2 + 0.25, _Y["norm"] + _BOX_H / 2, 4)
        return fig
    n, cls = grid[0] * grid[1], cfg.class_token
    tokens = f"{size('N', n)} patches{' + 1 class token' if cls else ''}, width {size('D', cfg.embed_dim)}"
    position = {"learn": ["model.pos_embed (learned)"], "sincos": ["vitnb.position.sincos_2d (fixed)"], "none": []}
    codes = ["vitnb.patches.PatchEmbed", "vitnb.model.VisionTransformer.embed"]
    codes += (["model.cls_token"] if cls else []) + position[cfg.pos_embed]
    _label(ax, label_x, y1, 1, EQUATIONS[1] if cls else _EQ1_NO_CLASS, codes, note=tokens)
    token_pool = cfg.global_pool == "token"
    formula = f"{EQUATIONS[4] if token_pool else _EQ4_AVG},  logits = head($y$)"
    codes = [
        f"{'model.norm' if token_pool else 'model.fc_norm'}, model.head",
        "vitnb.model.VisionTransformer.forward_head",
    ]
    _label(ax, label_x, y4, 4, formula, codes)
    _text(ax, label_x, block0_y + 0.4, "(2), (3)", size=_FS, weight="bold")  # over and under the arrow
    _text(ax, label_x + 1.25, block0_y + 0.4, "each block, drawn large", size=_FS - 0.5)
    _code(ax, label_x, block0_y - 0.42, "vitnb.encoder.Block")
    _code(ax, label_x, block0_y - 0.74, f"model.blocks[0] … [{'L−1' if paper else cfg.depth - 1}]")
    heads = f"{size('L', cfg.depth)} blocks, {size('h', cfg.num_heads)} heads each"
    _text(ax, label_x, block0_y - 1.1, heads, size=_FS - 1, color=_C["note"])
    return fig


# --- pre-norm and post-norm ------------------------------------------------------------------------
def plot_encoder_blocks() -> Figure:
    """An encoder block with pre-norm (ViT) and with post-norm (the original Transformer), side by side.

    Pre-norm: x + MSA(LN(x)), then x + MLP(LN(x)): the residual stream (thick line) runs from the input to the
    output through the additions only. Post-norm: LN(x + MSA(x)), then LN(x + MLP(x)): each LayerNorm sits on
    the residual stream. Both are `vitnb.encoder.Block`, chosen by `norm="pre"` or `"post"` (`ViTConfig.norm`).
    """
    bh = max(_block_height("pre"), _block_height("post"))
    width, height = 13.0, bh + 3.7
    fig, ax = _canvas(width, height, 0.5)
    formulas = {
        "pre": r"$x \leftarrow x + \mathrm{MSA}(\mathrm{LN}(x))$,  $x \leftarrow x + \mathrm{MLP}(\mathrm{LN}(x))$",
        "post": r"$x \leftarrow \mathrm{LN}(x + \mathrm{MSA}(x))$,  $x \leftarrow \mathrm{LN}(x + \mathrm{MLP}(x))$",
    }
    titles = {"pre": "pre-norm (ViT)", "post": "post-norm (original Transformer)"}
    y0 = 1.45
    for k, norm in enumerate(("pre", "post")):
        xc = 3.4 + k * 6.4
        marks = _draw_block(ax, xc, y0, norm, width=2.4, code=True)
        _text(ax, xc, y0 - 0.28, "$x$", size=10, ha="center")
        _text(ax, xc + 0.15, marks["top"] - 0.12, "output", size=8.5)
        _text(ax, xc, height - 0.45, titles[norm], size=11, ha="center", weight="bold")
        _text(ax, xc, height - 0.95, formulas[norm], size=9, ha="center")
        _code(ax, xc, height - 1.38, f'vitnb.encoder.Block(..., norm="{norm}")', size=7.5, ha="center")
        if norm == "post":
            for y in marks["norm"]:
                _text(ax, xc + 1.32, y, "on the stream", size=7.5, color=_C["residual"])
    # a legend of the two kinds of line
    for ly, colour, lw, text in (
        (0.62, _C["residual"], _STREAM_LW, "residual stream: the input plus what each branch adds"),
        (0.25, _C["flow"], _FLOW_LW, "branch: what is added (MSA or MLP; in pre-norm after a LayerNorm)"),
    ):
        _line(ax, [3.0, 3.7], [ly, ly], color=colour, lw=lw)
        _text(ax, 3.85, ly, text, size=8.5)
    return fig
