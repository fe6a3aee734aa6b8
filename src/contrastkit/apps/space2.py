r"""SPACE-2's tree-structured soft labels for semi-supervised contrastive learning, on Fashion-MNIST.

Paper: Wanwei He, Yinpei Dai, Binyuan Hui, Min Yang, Zheng Cao, Jianbo Dong, Fei Huang, Luo Si,
Yongbin Li, "SPACE-2: Tree-Structured Semi-Supervised Contrastive Pre-training for Task-Oriented
Dialog Understanding", COLING 2022.

SPACE-2 gives labelled examples graded similarity targets from the overlap of their semantic trees
(instead of SupCon's same-label-or-not), so that related examples are not pushed apart, and lets
unlabelled examples contribute only their self-augmented positives. Here the tree is Fashion-MNIST's
natural one: tops (T-shirt/top, pullover, coat, shirt), bottoms (trouser), dresses (dress),
footwear (sandal, sneaker, ankle boot) and bags (bag). The tree score of two classes is the share
of the two tree levels (branch, class) they have in common: 1 for the same class, 0.5 for the same
branch, 0 otherwise. Each batch holds 64 labelled images (5 % of the training subset is labelled,
class-balanced) and 192 unlabelled ones, two augmented views each, and the loss is the soft-target
SupCon of :class:`~contrastkit.losses.SupCon` (``target_matrix=``):

.. math::
    \ell_i = -\sum_{j \neq i} \frac{r_{ij}}{\sum_{k \neq i} r_{ik}}
        \log \frac{e^{s_{ij}/\tau}}{\sum_{k \neq i} e^{s_{ik}/\tau}}

over the 2N views, with ``r_ij`` the tree score for two labelled images, and for an unlabelled
image 1 for its own other view and 0 elsewhere (the self-supervised term). The baseline is the same
loss with hard labels (score 0.5 replaced by 0: plain semi-supervised SupCon); both train the same
encoder with the same budget. Measured: linear probe of the frozen encoder with all training labels
of the subset (primary) and with only the 5 % labelled images, k-NN accuracy, and the tree
consistency of the k-NN classifier's errors (the fraction of its mistakes whose predicted class is
in the true class's branch).

Data: real: Fashion-MNIST (the Debian ``dataset-fashion-mnist`` files read by
:func:`contrastkit.data.load_dataset`), a seeded class-balanced subset of 6000 training and 2000
test images (quick form: 768 and 400); the paper's data are dialogs, not images.
"""

from __future__ import annotations

import torch
from torch import Tensor

from contrastkit.apps._app import App, AppSettings, Measured
from contrastkit.apps._fashion import embed, encoder, load_subset, probe, two_views
from contrastkit.eval import knn_predict
from contrastkit.losses import SupCon
from contrastkit.models import MLPHead
from contrastkit.train import StepOutput, train_custom

__all__ = ["APP", "BRANCH", "run", "soft_targets", "tree_scores"]

# Fashion-MNIST class -> branch: 0 tops, 1 bottoms, 2 dresses, 3 footwear, 4 bags.
BRANCH = (0, 1, 0, 2, 0, 3, 0, 3, 4, 3)
LABELLED_FRACTION = 0.05
LABELLED_PER_BATCH = 64
UNLABELLED_PER_BATCH = 192


def tree_scores(branch_score: float) -> Tensor:
    """``(10, 10)`` class similarity: 1 same class, ``branch_score`` same branch, 0 otherwise."""
    branch = torch.tensor(BRANCH)
    same_branch = (branch[:, None] == branch[None, :]).double()
    scores = branch_score * same_branch
    scores.fill_diagonal_(1.0)
    return scores


def soft_targets(labels: Tensor, scores: Tensor) -> Tensor:
    """Per-instance ``(N, N)`` targets: ``scores[y_i, y_j]`` between labelled images (label >= 0),
    the identity for unlabelled ones (label -1: only their own other views are positives)."""
    n = labels.shape[0]
    known = labels >= 0
    y = labels.clamp(min=0)
    target = scores[y][:, y] * (known[:, None] & known[None, :]).double()
    target[torch.arange(n), torch.arange(n)] = 1.0
    return target


def _labelled_indices(labels: Tensor, seed: int) -> Tensor:
    """5 % of the images, the same number from every class (seeded)."""
    g = torch.Generator().manual_seed(seed + 101)
    per_class = max(1, round(LABELLED_FRACTION * len(labels) / 10))
    picks = [
        torch.nonzero(labels == c).flatten()[torch.randperm(int((labels == c).sum()), generator=g)][
            :per_class
        ]
        for c in range(10)
    ]
    return torch.cat(picks)


class _Batcher:
    """``epoch -> [(indices, labels-or--1)]``: the unlabelled images in a fresh order, each batch
    completed by ``LABELLED_PER_BATCH`` labelled images drawn at random."""

    def __init__(self, n: int, labelled: Tensor, seed: int) -> None:
        mask = torch.ones(n, dtype=torch.bool)
        mask[labelled] = False
        self.unlabelled = torch.nonzero(mask).flatten()
        self.labelled = labelled
        self.seed = seed

    def __call__(self, epoch: int) -> list[tuple[Tensor, Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 1000 + epoch)
        order = self.unlabelled[torch.randperm(len(self.unlabelled), generator=g)]
        steps = len(order) // UNLABELLED_PER_BATCH
        out = []
        for s in range(steps):
            u = order[s * UNLABELLED_PER_BATCH : (s + 1) * UNLABELLED_PER_BATCH]
            lab = self.labelled[
                torch.randperm(len(self.labelled), generator=g)[:LABELLED_PER_BATCH]
            ]
            known = torch.cat(
                [torch.ones(len(lab), dtype=torch.bool), torch.zeros(len(u), dtype=torch.bool)]
            )
            out.append((torch.cat([lab, u]), known))
        return out


def _train(
    images: Tensor, labels: Tensor, labelled: Tensor, branch_score: float, seed: int, epochs: int
) -> tuple[torch.nn.Module, list[float]]:
    torch.manual_seed(seed)
    enc = encoder()
    head = MLPHead(enc.out_dim, hidden_dim=256, out_dim=64)
    loss_fn = SupCon(temperature=0.2, base_temperature=0.2)
    scores = tree_scores(branch_score)
    gen = torch.Generator().manual_seed(seed + 17)

    def step(batch: tuple[Tensor, Tensor]) -> StepOutput:
        idx, known = batch
        y = torch.where(known, labels[idx], torch.full_like(labels[idx], -1))
        views = two_views(images[idx], gen)
        b = views.shape[0]
        z = head(enc(views.reshape(2 * b, *views.shape[2:]))).reshape(b, 2, -1)
        loss = loss_fn(z, target_matrix=soft_targets(y, scores).float())
        return StepOutput(loss=loss, samples=b)

    history = train_custom(
        [enc, head],
        step,
        _Batcher(len(images), labelled, seed),
        epochs=epochs,
        lr=2e-3,
        weight_decay=1e-4,
        name="SPACE-2 soft SupCon",
    )
    return enc, [h.loss for h in history]


def _errors_in_branch(pred: Tensor, true: Tensor) -> float:
    """Fraction of the mistakes whose predicted class is in the true class's branch (NaN-free:
    1.0 when there is no mistake)."""
    branch = torch.tensor(BRANCH)
    wrong = pred != true
    if not bool(wrong.any()):
        return 1.0
    return float((branch[pred[wrong]] == branch[true[wrong]]).double().mean())


def run(settings: AppSettings) -> dict[str, Measured]:
    """Train with tree soft labels and with hard labels; probe and analyse both encoders."""
    quick = settings.quick
    data = load_subset(settings.seed, 768 if quick else 6000, 400 if quick else 2000)
    epochs = 2 if quick else 5
    labelled = _labelled_indices(data.train_labels, settings.seed)
    results: dict[str, Measured] = {}
    for name, branch_score in (("tree_soft", 0.5), ("hard_supcon", 0.0)):
        enc, losses = _train(
            data.train_images, data.train_labels, labelled, branch_score, settings.seed, epochs
        )
        f_tr = embed(enc, [enc], data.train_images)
        f_te = embed(enc, [enc], data.test_images)
        pred = knn_predict(f_tr, data.train_labels, f_te, k=20, num_classes=10)
        results[name] = Measured(
            metrics={
                "probe": probe(f_tr, data.train_labels, f_te, data.test_labels, settings.seed),
                "probe_5pct_labels": probe(
                    f_tr[labelled],
                    data.train_labels[labelled],
                    f_te,
                    data.test_labels,
                    settings.seed,
                ),
                "knn_accuracy": float((pred == data.test_labels).double().mean()),
                "errors_in_branch": _errors_in_branch(pred, data.test_labels),
            },
            losses=losses,
        )
    return results


APP = App(
    name="space2",
    title="SPACE-2: tree-structured soft labels in semi-supervised SupCon, on Fashion-MNIST",
    paper=(
        "He, Dai, Hui, Yang, Cao, Dong, Huang, Si, Li, 'SPACE-2: Tree-Structured Semi-Supervised "
        "Contrastive Pre-training for Task-Oriented Dialog Understanding', COLING 2022"
    ),
    data=(
        "real: Fashion-MNIST (Debian dataset-fashion-mnist), seeded class-balanced subset of 6000 "
        "train / 2000 test images, 5 % of the training labels used in pretraining"
    ),
    claim=(
        "Graded tree-structured similarity targets in semi-supervised contrastive pretraining give "
        "better representations than hard same-label targets"
    ),
    method="tree_soft",
    baselines=("hard_supcon",),
    metric="probe",
    chance=0.1,
    run=run,
    needs_fashion_mnist=True,
)
