"""The attention explorer as one self-contained HTML page: instant in any browser, with no kernel and no network.

    from vitnb.explorer import write_explorer
    page = write_explorer("explorer.html", model, test_set, images=12)   # or: python -m vitnb explore
    page                                                               # in a notebook: the page, inline

For a ViT and a handful of images, every map the notebook's explorer (`vitnb.widgets.AttentionExplorer`) can
show is computed in Python by `vitnb.maps.every_map`, bit for bit the maps of `vitnb.maps.attention_map` and
`vitnb.rollout`: per block the raw attention of each head and of their mean and max, the rollout through each
block, each for every query (the pooled readout and every token), and the gradient rollout of every class.
The page embeds them with the images and the predictions, and a small hand-written script (`page.js`, no
libraries) draws them: image, block, map kind, head, query (click a patch), class and opacity change the
picture within a frame, because nothing is computed in the browser but the drawing. What needs the model live
(a new image, a picture of your own) stays with the notebook's widget.

Size and error: each map is stored as one byte per value over its own range (`encode`): a value is off by at
most 1/510 (0.196%) of its map's range, the map's smallest and largest values are exact, and the picture is
exactly the min-max scaled map on 256 colour levels (the notebook's rule). The series' ViT (4 blocks of 4
heads, 7x7 patches, no cls token, 10 classes) needs 1,410 maps of 49 values per image: 12 images make a page of
1.35 MB (docs/explorer.html; its update latency in Chromium: benchmarks/RESULTS.md). The maps grow with
blocks x heads x tokens^2, so a large ViT (ViT-B/16 at 224 px: 12 x 14 x 197 x 196 values) needs several MB per
image.

    page.py      explorer_page, write_explorer, ExplorerPage (the HTML, its size, the inline view), pick_images
    encode.py    the payload: quantisation, the order of the maps, reading a page back (`PageMaps`)
    page.html, page.css, page.js   the page's template, style and script (package data)
"""

from .encode import PageMaps, read_payload
from .page import DEFAULT_IMAGES, ExplorerPage, explorer_page, pick_images, write_explorer

__all__ = [
    "DEFAULT_IMAGES",
    "ExplorerPage",
    "PageMaps",
    "explorer_page",
    "pick_images",
    "read_payload",
    "write_explorer",
]
