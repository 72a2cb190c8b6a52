"""The notebooks' protocols: code that exists to produce a notebook's numbers, tables and figures.

Notebooks and benchmarks import these modules; the library (`vitnb` outside this folder) never does.

    profiles         the quick/full run profiles (`get_profile`)
    paths            where runs live, and the checkpoints notebooks hand to each other
    results          summaries over seeds, markdown tables, CSV files
    short_runs       notebooks 02 and 03: small ViTs trained for well under a minute; position-table measures
    pretraining      notebook 05: pretraining a ViT on fractals, and reusing the checkpoint
    data_efficiency  notebook 06: accuracy per label budget, translation robustness
    data_efficiency_report  notebook 06's table and results paragraphs
    ablation         notebook 08: minor ViT modifications under one training protocol
    ablation_report  notebook 08's tables, the published claims checked, and its results paragraph
    figures          the figures of data_efficiency and ablation (their rows and summaries)
    in_context       notebook 09: the ViT paper's published results beside the series', priced on this CPU
"""

from .profiles import Profile, get_profile

__all__ = ["Profile", "get_profile"]
