"""Run profiles: one place that owns the numbers that differ between a quick check and the real run.

`VITNB_PROFILE=quick` (CI: small subsets, few steps, seconds per notebook) or `full` (default: the
run whose outputs are committed). Notebooks read `P = get_profile()` and use `P.name_of_setting`;
they never hard-code two sets of numbers.
"""

from __future__ import annotations

import os
import random
from types import MappingProxyType

import torch

_SETTINGS: dict[str, dict[str, object]] = {
    # name: {"quick": value, "full": value}
    "n_samples_per_plot": {"quick": 8, "full": 16},  # images shown in example grids
    "throughput_batches": {"quick": 2, "full": 10},  # timed batches per throughput measurement
    "throughput_batch_size": {"quick": 16, "full": 64},
}


class Profile:
    """Attribute access to the settings of one profile; an unknown name is an error, not a default."""

    def __init__(self, name: str):
        if name not in ("quick", "full"):
            raise ValueError(f"VITNB_PROFILE must be 'quick' or 'full', got {name!r}")
        self.name = name
        self._values = MappingProxyType({key: both[name] for key, both in _SETTINGS.items()})

    def __getattr__(self, key: str):
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"profile has no setting {key!r}; known: {sorted(self._values)}") from None

    def __repr__(self) -> str:
        return f"Profile({self.name!r})"


def get_profile(name: str | None = None) -> Profile:
    """The profile named by `name`, else by $VITNB_PROFILE, else 'full'."""
    return Profile(name or os.environ.get("VITNB_PROFILE", "full"))


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python's and torch's global generators; return a torch.Generator seeded the same way."""
    random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
