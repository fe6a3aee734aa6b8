"""Pseudo-labels for batch construction: G-SimCLR's autoencoder clusters and MCL's stage clusters.

- G-SimCLR (METHODS.md 3.8): a denoising autoencoder is trained briefly on the unlabelled data;
  its latent codes (globally average-pooled) are clustered with k-means, ``K = batch size``; the
  clusters feed :class:`~contrastkit.data.samplers.ClusterSpreadBatchSampler`.
  :func:`gsimclr_pseudo_labels` does both steps.
- MCL (METHODS.md 3.8): at each stage the current model's features are L2-normalised and clustered
  with MiniBatchKMeans (``K = 10``, ``max_iter = 100``, ``tol = 1e-5``); :func:`stage_clusters`
  does this and :func:`~contrastkit.data.samplers.mixed_radix_labels` combines the stages.

Everything is seeded and leaves torch's global random state as it was.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._validation import check_finite, check_positive

__all__ = [
    "DenoisingAutoencoder",
    "PseudoLabels",
    "gsimclr_pseudo_labels",
    "kmeans_labels",
    "stage_clusters",
    "train_denoising_autoencoder",
]


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _as_float_tensor(x: object, name: str, *, min_dim: int = 2) -> Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point, got dtype {x.dtype}")
    if x.dim() < min_dim or x.shape[0] < 1:
        raise ValueError(
            f"{name} must have shape (N, ...) with at least {min_dim} dims and N >= 1; got "
            f"{tuple(x.shape)}"
        )
    return check_finite(x.detach(), name)


class DenoisingAutoencoder(nn.Module):
    """A small denoising autoencoder whose pooled latent code feeds G-SimCLR's k-means.

    For images ``(C, H, W)`` with ``H`` and ``W`` divisible by 4 it is convolutional:
    ``Conv(C->32, s1) -> Conv(32->64, s2) -> Conv(64->latent, s2)`` (3x3, ReLU) and the mirror
    image with transposed convolutions, ending in a sigmoid (inputs in ``[0, 1]``); the code of a
    sample is the latent feature map **globally average-pooled** (G-SimCLR's "retrieval" layer +
    global average pooling). Other inputs (vectors, or images of other sizes) use an MLP
    ``D -> 256 -> latent -> 256 -> D`` with a linear output.

    The G-SimCLR notebook's exact architecture and noise level are not reproduced
    ([UNVERIFIED] in METHODS.md); this keeps the structure (conv DAE, pooled latent).

    Args:
        input_shape: Shape of one sample, e.g. ``(1, 28, 28)`` or ``(64,)``.
        latent_dim: Channels (conv) or units (MLP) of the code.
    """

    def __init__(self, input_shape: Sequence[int], *, latent_dim: int = 64) -> None:
        super().__init__()
        shape = tuple(int(s) for s in input_shape)
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"input_shape must be non-empty positive sizes; got {input_shape!r}")
        self.input_shape = shape
        self.latent_dim = _check_int(latent_dim, "latent_dim", 1)
        self.conv = len(shape) == 3 and shape[1] % 4 == 0 and shape[2] % 4 == 0
        if self.conv:
            c = shape[0]
            self.encoder: nn.Module = nn.Sequential(
                nn.Conv2d(c, 32, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(32, 64, 3, stride=2, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(64, latent_dim, 3, stride=2, padding=1),
                nn.ReLU(inplace=True),
            )
            self.decoder: nn.Module = nn.Sequential(
                nn.ConvTranspose2d(latent_dim, 64, 4, stride=2, padding=1),
                nn.ReLU(inplace=True),
                nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(32, c, 3, padding=1),
                nn.Sigmoid(),
            )
        else:
            d = math.prod(shape)
            self.encoder = nn.Sequential(
                nn.Flatten(),
                nn.Linear(d, 256),
                nn.ReLU(inplace=True),
                nn.Linear(256, latent_dim),
            )
            self.decoder = nn.Sequential(
                nn.ReLU(),
                nn.Linear(latent_dim, 256),
                nn.ReLU(inplace=True),
                nn.Linear(256, d),
            )

    def _check(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"expected inputs of shape (B, {', '.join(map(str, self.input_shape))}); got "
                f"{tuple(x.shape)}"
            )
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction of ``x`` (same shape)."""
        h = self.encoder(self._check(x))
        out: Tensor = self.decoder(h)
        return out.reshape(x.shape)

    def encode(self, x: Tensor) -> Tensor:
        """The pooled latent code ``(B, latent_dim)``."""
        h: Tensor = self.encoder(self._check(x))
        return h.mean(dim=(2, 3)) if self.conv else h


def train_denoising_autoencoder(
    data: Tensor | np.ndarray,
    *,
    latent_dim: int = 64,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 1e-3,
    noise_std: float = 0.2,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> tuple[DenoisingAutoencoder, list[float]]:
    """Train a :class:`DenoisingAutoencoder` to reconstruct ``data`` from Gaussian-noised copies.

    Adam, mean squared error against the clean input, shuffled mini-batches; the noise is
    ``N(0, noise_std^2)`` (clamped to ``[0, 1]`` for conv models, whose inputs are images in
    ``[0, 1]``). Seeded; torch's global random state is restored afterwards.

    Returns:
        The trained model (eval mode, on ``device``) and the mean loss of every epoch.
    """
    x = _as_float_tensor(data, "data")
    epochs = _check_int(epochs, "epochs", 1)
    batch_size = _check_int(batch_size, "batch_size", 1)
    check_positive(lr, "lr")
    check_positive(noise_std, "noise_std", allow_zero=True)
    seed = _check_int(seed, "seed", 0)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    losses: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DenoisingAutoencoder(tuple(x.shape[1:]), latent_dim=latent_dim).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        g = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(x.shape[0], generator=g)
            total = 0.0
            for s in range(0, x.shape[0], batch_size):
                clean = x[order[s : s + batch_size]].float()
                noisy = clean + noise_std * torch.randn(clean.shape, generator=g)
                if model.conv:
                    noisy = noisy.clamp(0.0, 1.0)
                clean, noisy = clean.to(dev), noisy.to(dev)
                loss = F.mse_loss(model(noisy), clean)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * clean.shape[0]
            losses.append(total / x.shape[0])
    model.eval()
    return model, losses


def kmeans_labels(
    features: Tensor | np.ndarray,
    n_clusters: int,
    *,
    seed: int = 0,
    n_init: int = 3,
    normalize: bool = False,
) -> tuple[Tensor, Tensor]:
    """k-means (scikit-learn, k-means++) cluster ids and centres of ``features`` ``(N, D)``.

    Returns:
        ``(labels (N,) int64, centres (n_clusters, D) float32)``.
    """
    from sklearn.cluster import KMeans

    x = _as_float_tensor(features, "features")
    if x.dim() != 2:
        raise ValueError(f"features must have shape (N, D); got {tuple(x.shape)}")
    k = _check_int(n_clusters, "n_clusters", 1)
    if k > x.shape[0]:
        raise ValueError(f"n_clusters must be <= the number of samples {x.shape[0]}; got {k}")
    if normalize:
        x = F.normalize(x, dim=1)
    km = KMeans(n_clusters=k, n_init=_check_int(n_init, "n_init", 1), random_state=seed)
    labels = km.fit_predict(x.double().cpu().numpy())
    return (
        torch.from_numpy(labels.astype(np.int64)),
        torch.from_numpy(km.cluster_centers_.astype(np.float32)),
    )


@dataclass
class PseudoLabels:
    """G-SimCLR pseudo-labels and how they were made.

    Attributes:
        labels: ``(N,)`` int64 cluster ids in ``[0, n_clusters)``.
        latents: ``(N, latent_dim)`` pooled autoencoder codes that were clustered.
        dae_losses: Mean reconstruction loss of every autoencoder epoch.
        cluster_sizes: Members of each cluster.
    """

    labels: Tensor
    latents: Tensor
    dae_losses: list[float] = field(default_factory=list)
    cluster_sizes: list[int] = field(default_factory=list)


def gsimclr_pseudo_labels(
    data: Tensor | np.ndarray,
    n_clusters: int,
    *,
    latent_dim: int = 64,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 1e-3,
    noise_std: float = 0.2,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> PseudoLabels:
    """G-SimCLR's pseudo-labels: train a denoising autoencoder, k-means on its pooled latents.

    Use ``n_clusters = batch size`` of the contrastive training (G-SimCLR: 64 on CIFAR-10), so that
    :class:`~contrastkit.data.samplers.ClusterSpreadBatchSampler` can put one sample of each cluster
    in a batch.

    Paper: Chakraborty et al., "G-SimCLR: Self-Supervised Contrastive Learning with Guided
    Projection via Pseudo Labelling" (2020).
    """
    x = _as_float_tensor(data, "data")
    model, losses = train_denoising_autoencoder(
        x,
        latent_dim=latent_dim,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        noise_std=noise_std,
        seed=seed,
        device=device,
    )
    dev = next(model.parameters()).device
    with torch.no_grad():
        latents = torch.cat(
            [model.encode(x[s : s + 1024].float().to(dev)).cpu() for s in range(0, len(x), 1024)]
        )
    labels, _ = kmeans_labels(latents, n_clusters, seed=seed)
    sizes = torch.bincount(labels, minlength=n_clusters).tolist()
    return PseudoLabels(labels=labels, latents=latents, dae_losses=losses, cluster_sizes=sizes)


def stage_clusters(
    features: Tensor | np.ndarray,
    k: int = 10,
    *,
    seed: int = 0,
    batch_size: int | None = None,
    max_iter: int = 100,
    tol: float = 1e-5,
) -> Tensor:
    """MCL's clustering of one stage: MiniBatchKMeans on the L2-normalised features.

    Defaults from MajorDavidZhang/MCL ``cluster.py``: ``K = 10``, ``max_iter = 100``,
    ``tol = 1e-5``, and a k-means batch of 1,000,000 — larger than our datasets, so
    ``batch_size=None`` uses all ``N`` samples per k-means step.

    Returns:
        ``(N,)`` int64 cluster ids in ``[0, k)``.
    """
    from sklearn.cluster import MiniBatchKMeans

    x = _as_float_tensor(features, "features")
    if x.dim() != 2:
        raise ValueError(f"features must have shape (N, D); got {tuple(x.shape)}")
    k = _check_int(k, "k", 1)
    if k > x.shape[0]:
        raise ValueError(f"k must be <= the number of samples {x.shape[0]}; got {k}")
    bs = x.shape[0] if batch_size is None else _check_int(batch_size, "batch_size", 1)
    km = MiniBatchKMeans(
        n_clusters=k,
        batch_size=bs,
        max_iter=_check_int(max_iter, "max_iter", 1),
        tol=check_positive(tol, "tol", allow_zero=True),
        random_state=_check_int(seed, "seed", 0),
        n_init=3,
    )
    xn = F.normalize(x.float(), dim=1).cpu().numpy()
    return torch.from_numpy(km.fit_predict(xn).astype(np.int64))
