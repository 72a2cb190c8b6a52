"""The explorer page's numbers: every map of a few images, one byte per value, and how to read them back.

Each map (h x w values over the patch grid) is stored as uint8 codes over its own range, with its smallest
and largest value kept exactly (float32):

    code = round((value - low) / (high - low) * 255)        value = low + code * (high - low) / 255

so a decoded value is off by at most (high - low) / 510, 0.196% of the map's range, and the map's smallest and
largest values (the colorbar's labels) come back exactly. A constant map has codes 0 and decodes exactly. The
picture needs no decoding: a map is drawn min-max scaled, and its codes are that scaling on 256 colour levels.

The payload is one JSON object (`PAYLOAD_FORMAT`) in the page's `<script type="application/json"
id="vitnb-data">`; `read_payload` finds it in a page and `PageMaps` decodes its maps. Per image the maps lie in
this order (`PageMaps.map_index`), h * w codes each, row-major:

    raw       block 0..L-1, head 0..H+1 (the heads, then 'mean', then 'max'), query 0..Q-1
    rollout   block 0..L-1, query 0..Q-1
    gradient  class 0..C-1

with Q = 1 + N queries: 0 = the pooled readout (what the head reads), then 1 + t for token t (`maps.every_map`).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UsageError

__all__ = [
    "KINDS",
    "LEVELS",
    "PAYLOAD_FORMAT",
    "PageMaps",
    "dequantise",
    "pack",
    "quantise",
    "read_payload",
    "relative_error",
    "stack_maps",
]

LEVELS = 255  # codes 0..255
PAYLOAD_FORMAT = "vitnb-explorer/1"
_DATA = re.compile(r'<script type="application/json" id="vitnb-data">(.*?)</script>', re.S)
KINDS = ("raw", "rollout", "gradient")  # the page's map kinds


def stack_maps(stacked: dict[str, torch.Tensor]) -> torch.Tensor:
    """`maps.every_map`'s dict -> (M, h * w): raw, then rollout, then gradient rollout maps, in the page's order."""
    parts = [stacked[key] for key in ("raw", "rollout", "gradient rollout")]
    patches = parts[0].shape[-2] * parts[0].shape[-1]
    return torch.cat([part.reshape(-1, patches) for part in parts])


def quantise(maps: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(M, P) maps -> uint8 codes (M, P), and each map's low and high (M,) as float32 (exact for float32 maps)."""
    values = maps.detach().cpu().double().numpy()
    low, high = values.min(axis=1), values.max(axis=1)  # (M,)
    span = np.where(high > low, high - low, 1.0)
    codes = np.rint((values - low[:, None]) / span[:, None] * LEVELS).astype(np.uint8)
    return codes, low.astype(np.float32), high.astype(np.float32)


def dequantise(codes: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """uint8 codes (M, P) and their maps' low and high (M,) -> float64 values (M, P), as the page's script decodes."""
    low, high = low.astype(np.float64)[:, None], high.astype(np.float64)[:, None]
    return low + codes.astype(np.float64) * (high - low) / LEVELS


def relative_error(maps: torch.Tensor, codes: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    """The largest |decoded - true| over all maps, each divided by its map's range (0 for constant maps)."""
    values = maps.detach().cpu().double().numpy()
    span = (high.astype(np.float64) - low.astype(np.float64))[:, None]
    error = np.abs(dequantise(codes, low, high) - values)
    return float(np.max(np.where(span > 0, error / np.where(span > 0, span, 1.0), 0.0), initial=0.0))


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def pack(codes: np.ndarray, low: np.ndarray, high: np.ndarray, pixels: np.ndarray) -> dict[str, str]:
    """The payload's binary fields as base64: codes and pixels as bytes, low and high as little-endian float32."""
    return {
        "codes": _b64(codes.astype(np.uint8)),
        "low": _b64(low.astype("<f4")),
        "high": _b64(high.astype("<f4")),
        "pixels": _b64(pixels.astype(np.uint8)),
    }


def read_payload(page: str) -> dict:
    """The JSON payload of an explorer page's HTML text; a UsageError if it is not one."""
    found = _DATA.search(page)
    if found is None:
        raise UsageError('not a vitnb explorer page: it has no <script id="vitnb-data">')
    payload = json.loads(found.group(1))
    if payload.get("format") != PAYLOAD_FORMAT:
        raise UsageError(f"explorer page format {payload.get('format')!r}; this vitnb reads {PAYLOAD_FORMAT!r}")
    return payload


@dataclass
class PageMaps:
    """The maps of an explorer page, decoded: `PageMaps.of(html).map(image, 'raw', block=1, head='mean')`."""

    payload: dict
    codes: np.ndarray  # (images * M, P) uint8
    low: np.ndarray  # (images * M,) float32
    high: np.ndarray

    @classmethod
    def of(cls, page: str) -> PageMaps:
        """Decode the maps of a page's HTML text."""
        payload = read_payload(page)
        h, w = payload["grid"]
        codes = np.frombuffer(base64.b64decode(payload["codes"]), np.uint8).reshape(-1, h * w)
        low, high = (np.frombuffer(base64.b64decode(payload[key]), "<f4") for key in ("low", "high"))
        return cls(payload, codes, low, high)

    @property
    def per_image(self) -> int:
        """Maps per image: L * (H + 2) * Q raw, L * Q rollout, C gradient rollout."""
        p = self.payload
        blocks, queries = p["blocks"], p["queries"]
        return blocks * (p["heads"] + 2) * queries + blocks * queries + len(p["classes"])

    def map_index(self, image: int, kind: str, block: int = 0, head: int = 0, query: int = 0, target: int = 0) -> int:
        """The row of a map in `codes`: `head` H is 'mean', H + 1 'max'; `query` 0 the pooled readout, 1 + t token t."""
        p = self.payload
        blocks, heads, queries = p["blocks"], p["heads"] + 2, p["queries"]
        if kind not in KINDS:
            raise UsageError(f"kind must be one of {KINDS}, got {kind!r}")
        base = image * self.per_image
        if kind == "raw":
            return base + (block * heads + head) * queries + query
        base += blocks * heads * queries
        return base + block * queries + query if kind == "rollout" else base + blocks * queries + target

    def map(self, image: int, kind: str, **where: int) -> np.ndarray:
        """One decoded map (h, w), float64: see `map_index` for the arguments."""
        m = self.map_index(image, kind, **where)
        values = dequantise(self.codes[m : m + 1], self.low[m : m + 1], self.high[m : m + 1])[0]
        return values.reshape(self.payload["grid"])
