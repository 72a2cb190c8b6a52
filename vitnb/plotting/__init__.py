"""The package's figures (matplotlib) and the explorer's pictures (numpy arrays and PNG bytes).

    from vitnb import plotting
    plotting.show_patches(image, 4)
    plotting.plot_map_grid(images, {"rollout": maps}, label="x uniform")

    diagrams   the architecture: the whole ViT (Figure 1 of its paper, with equations 1-4 and vitnb's modules),
               an encoder block with pre-norm and with post-norm
    images     an image, a map over it (`show_map`), a grid of maps over images (`plot_map_grid`), patches,
               the similarity of position embeddings
    attention  attention heatmaps, every map of one image, attention distance, deletion and insertion curves
    training   a run's history, class samples, reconstructions
    render     pictures without a figure: the display rules for images and maps, the explorer's PNGs

The figures of the notebooks' experiments (their result tables) live in `vitnb.experiments.figures`.
"""

from .attention import (
    METHOD_COLORS,
    plot_attention_distance_by_depth,
    plot_attention_heatmap,
    plot_attention_maps,
    plot_deletion_insertion,
    plot_mean_attention_distance,
)
from .diagrams import plot_encoder_blocks, plot_vit_architecture
from .images import (
    patch_mosaic,
    plot_map_grid,
    plot_pos_embed_similarity,
    pos_embed_similarity,
    show_image,
    show_map,
    show_patches,
)
from .render import colorbar_strip, display_image, min_max, render_overlay, to_png, upsampled_heat
from .training import plot_class_samples, plot_history, plot_reconstructions

__all__ = [
    "METHOD_COLORS",
    "colorbar_strip",
    "display_image",
    "min_max",
    "patch_mosaic",
    "plot_attention_distance_by_depth",
    "plot_attention_heatmap",
    "plot_attention_maps",
    "plot_class_samples",
    "plot_deletion_insertion",
    "plot_encoder_blocks",
    "plot_history",
    "plot_map_grid",
    "plot_mean_attention_distance",
    "plot_pos_embed_similarity",
    "plot_reconstructions",
    "plot_vit_architecture",
    "pos_embed_similarity",
    "render_overlay",
    "show_image",
    "show_map",
    "show_patches",
    "to_png",
    "upsampled_heat",
]
