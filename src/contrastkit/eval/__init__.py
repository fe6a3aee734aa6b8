"""Evaluation of frozen features: kNN, linear probe, clustering and representation geometry.

Every function accepts torch tensors or numpy arrays, validates its input (shapes, lengths, NaN/inf,
ranges) with a ``ValueError``/``TypeError`` that says what was expected and what came, runs without
grad, and is sized for CPU use on tens of thousands of samples.

- :func:`extract_features`: run a frozen encoder over a data tensor in batches.
- :func:`knn_predict`, :func:`knn_accuracy`: cosine kNN with InstDisc temperature-weighted votes.
- :func:`linear_probe` -> :class:`ProbeResult`: multinomial logistic regression (L-BFGS, L2 chosen
  on a stratified validation split).
- :func:`cluster_metrics`, :func:`clustering_accuracy`: k-means NMI / ARI / Hungarian accuracy;
  :func:`modularity`: label-free quality of a partition of a graph.
- :func:`alignment`, :func:`uniformity`, :func:`tolerance`, :func:`singular_values`,
  :func:`effective_rank`, :func:`hardness_profile`: geometry of the representation (docs/methods.md 2.8).
- :func:`epoch_metrics`: monitoring during training (kNN and geometry every K epochs).
- :func:`collect_features`, :func:`layerwise_probe`, :func:`attribute_probe`, :func:`probe_layers`:
  probes of pre-/post-projection and head layers, and per-attribute (feature suppression) probes.
- :func:`write_report`: plots and a self-contained HTML report of a run (needs the ``plot`` extra).
- :func:`write_comparison`: one self-contained HTML page overlaying several runs (``contrastkit
  compare``); :func:`geometry_metrics`: alignment, uniformity, tolerance and effective rank in both
  spaces (``h`` and ``z``).
- :func:`embed_run`, :func:`save_embeddings`, :func:`load_embeddings`: export embeddings.
- :func:`retrieval_metrics`, :func:`zero_shot_classifier`, :func:`zero_shot_predict`,
  :func:`zero_shot_accuracy`: two-tower evaluation (recall@k, ranks, prompt-ensembled zero-shot);
  :func:`evaluate_two_tower` (a two-tower run's final metrics), :func:`zero_shot_run` (classify a
  run's images with any class names), :func:`embed_side`, :func:`two_tower_embeddings`.
"""

from contrastkit.eval.clustering import cluster_metrics, clustering_accuracy, modularity
from contrastkit.eval.compare import write_comparison
from contrastkit.eval.embed import embed_run, load_embeddings, save_embeddings
from contrastkit.eval.features import extract_features
from contrastkit.eval.geometry import (
    alignment,
    effective_rank,
    hardness_profile,
    singular_values,
    tolerance,
    uniformity,
)
from contrastkit.eval.knn import knn_accuracy, knn_predict
from contrastkit.eval.linear import ProbeResult, linear_probe
from contrastkit.eval.monitor import epoch_metrics, geometry_metrics
from contrastkit.eval.probes import (
    attribute_probe,
    collect_features,
    layerwise_probe,
    probe_layers,
)
from contrastkit.eval.ranking import identity_retrieval, ndcg_at_k
from contrastkit.eval.report import MissingExtraError, write_report
from contrastkit.eval.retrieval import (
    retrieval_metrics,
    zero_shot_accuracy,
    zero_shot_classifier,
    zero_shot_predict,
)
from contrastkit.eval.two_tower import (
    ZeroShotResult,
    embed_side,
    evaluate_two_tower,
    two_tower_embeddings,
    zero_shot_run,
)

__all__ = [
    "MissingExtraError",
    "ProbeResult",
    "ZeroShotResult",
    "alignment",
    "attribute_probe",
    "cluster_metrics",
    "clustering_accuracy",
    "collect_features",
    "effective_rank",
    "embed_run",
    "embed_side",
    "epoch_metrics",
    "evaluate_two_tower",
    "extract_features",
    "geometry_metrics",
    "hardness_profile",
    "identity_retrieval",
    "knn_accuracy",
    "knn_predict",
    "layerwise_probe",
    "linear_probe",
    "load_embeddings",
    "modularity",
    "ndcg_at_k",
    "probe_layers",
    "retrieval_metrics",
    "save_embeddings",
    "singular_values",
    "tolerance",
    "two_tower_embeddings",
    "uniformity",
    "write_comparison",
    "write_report",
    "zero_shot_accuracy",
    "zero_shot_classifier",
    "zero_shot_predict",
    "zero_shot_run",
]
