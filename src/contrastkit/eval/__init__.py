"""Evaluation of frozen features: kNN, linear probe, clustering and representation geometry.

Every function accepts torch tensors or numpy arrays, validates its input (shapes, lengths, NaN/inf,
ranges) with a ``ValueError``/``TypeError`` that says what was expected and what came, runs without
grad, and is sized for CPU use on tens of thousands of samples.

- :func:`extract_features`: run a frozen encoder over a data tensor in batches.
- :func:`knn_predict`, :func:`knn_accuracy`: cosine kNN with InstDisc temperature-weighted votes.
- :func:`linear_probe` -> :class:`ProbeResult`: multinomial logistic regression (L-BFGS, L2 chosen
  on a stratified validation split).
- :func:`cluster_metrics`, :func:`clustering_accuracy`: k-means NMI / ARI / Hungarian accuracy.
- :func:`alignment`, :func:`uniformity`, :func:`tolerance`, :func:`singular_values`,
  :func:`effective_rank`, :func:`hardness_profile`: geometry of the representation (METHODS.md 2.8).
"""

from contrastkit.eval.clustering import cluster_metrics, clustering_accuracy
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

__all__ = [
    "ProbeResult",
    "alignment",
    "cluster_metrics",
    "clustering_accuracy",
    "effective_rank",
    "extract_features",
    "hardness_profile",
    "knn_accuracy",
    "knn_predict",
    "linear_probe",
    "singular_values",
    "tolerance",
    "uniformity",
]
