"""Projection heads and the encoder + head wrapper."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["ContrastiveModel", "MLPHead"]


class MLPHead(nn.Module):
    """SimCLR's projection head: ``Linear(d_h, hidden) -> [BN] -> ReLU -> Linear(hidden, d_z)``.

    Paper: Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations" (2020);
    ScatSimCLR (2021) uses it without batch norm.

    Args:
        in_dim: encoder output size ``d_h``.
        hidden_dim: hidden layer size.
        out_dim: projection size ``d_z``.
        batch_norm: insert a BatchNorm1d after the hidden linear layer.
    """

    def __init__(
        self, in_dim: int, *, hidden_dim: int = 512, out_dim: int = 128, batch_norm: bool = False
    ) -> None:
        super().__init__()
        if min(in_dim, hidden_dim, out_dim) < 1:
            raise ValueError(
                f"head sizes must be positive; got in_dim={in_dim}, hidden_dim={hidden_dim}, "
                f"out_dim={out_dim}"
            )
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)]
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, h: Tensor) -> Tensor:
        out: Tensor = self.net(h)
        return out


class ContrastiveModel(nn.Module):
    """An encoder followed by a projection head; ``forward`` returns ``(h, z)`` so both can be probed."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(x)
        return h, self.head(h)
