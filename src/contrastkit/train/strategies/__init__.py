"""Training strategies beyond the plain loop: batch orders, stages, fine-tuning, continual
learning, graph clustering and other modalities.

- :func:`fit_gsimclr` (G-SimCLR): cluster-spread batches from autoencoder pseudo-labels.
- :func:`fit_mcl` (MCL): multistage training inside pseudo-label cells, concatenated features.
- :func:`core_tune`, :class:`CoreTuningLoss` (Core-tuning): contrast-regularised fine-tuning.
- :func:`fit_continual_supcon` (COCONUT): class-incremental SupCon with a rehearsal buffer.
- :func:`scgc_cluster` (SCGC / SCGC*): graph clustering with an MLP, the neighbourhood or
  influence-augmented contrastive loss and a DEC head (``contrastkit cluster``).
- :func:`fit_modality`: 1-D CNN / MLP encoders on series and tables, against the raw input.

Each returns its measurements next to a same-budget baseline where the method defines one.
"""

from contrastkit.train.strategies._common import (
    StrategyResult,
    batch_label_purity,
    random_batches,
    train_contrastive,
)
from contrastkit.train.strategies.continual import default_tasks, fit_continual_supcon
from contrastkit.train.strategies.coretuning import (
    CoreTuningLoss,
    FinetuneRun,
    core_tune,
    hard_pair_mixing,
    soft_label_ids,
)
from contrastkit.train.strategies.graph_clustering import (
    ClusterRun,
    ScgcConfig,
    load_graph_data,
    scgc_cluster,
)
from contrastkit.train.strategies.gsimclr import fit_gsimclr
from contrastkit.train.strategies.mcl import fit_mcl
from contrastkit.train.strategies.modalities import fit_modality

__all__ = [
    "ClusterRun",
    "CoreTuningLoss",
    "FinetuneRun",
    "ScgcConfig",
    "StrategyResult",
    "batch_label_purity",
    "core_tune",
    "default_tasks",
    "fit_continual_supcon",
    "fit_gsimclr",
    "fit_mcl",
    "fit_modality",
    "hard_pair_mixing",
    "load_graph_data",
    "random_batches",
    "scgc_cluster",
    "soft_label_ids",
    "train_contrastive",
]
