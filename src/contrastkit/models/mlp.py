"""A multilayer-perceptron encoder for vectors (tabular data, flattened small images, features)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["MLPEncoder"]


class MLPEncoder(nn.Module):
    """``[Linear -> (BatchNorm1d) -> ReLU -> (Dropout)] x len(hidden_dims)`` on ``(B, in_dim)``.

    The representation is the output of the last block (after its ReLU), of size
    ``hidden_dims[-1]``. With batch norm the linear layers have no bias. The default (two layers of
    256) is the CPU smoke-test encoder of docs/methods.md, section 5 ("2-layer MLP"); SCARF (Bahri et al.,
    2022) uses 4-layer, 256-unit MLPs for tabular data: ``hidden_dims=(256,) * 4``.

    Input with more than two dimensions (e.g. ``(B, 1, 8, 8)`` images) is flattened from dim 1.

    Args:
        in_dim: Input features.
        hidden_dims: Width of each layer (non-empty).
        batch_norm: Batch-normalise after each linear layer.
        dropout: Dropout probability after each ReLU (0 disables).

    Attributes:
        out_dim: ``hidden_dims[-1]``.
    """

    def __init__(
        self,
        in_dim: int,
        *,
        hidden_dims: Sequence[int] = (256, 256),
        batch_norm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        dims = list(hidden_dims)
        if isinstance(in_dim, bool) or not isinstance(in_dim, int) or in_dim < 1:
            raise ValueError(f"in_dim must be an int >= 1; got {in_dim!r}")
        if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
            raise ValueError(f"hidden_dims must be a non-empty list of ints >= 1; got {dims!r}")
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, int | float)
            or not (0.0 <= dropout < 1.0)
        ):
            raise ValueError(f"dropout must be a probability in [0, 1); got {dropout!r}")
        layers: list[nn.Module] = []
        c = in_dim
        for d in dims:
            layers.append(nn.Linear(c, d, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(d))
            layers.append(nn.ReLU(inplace=True))
            if dropout > 0:
                layers.append(nn.Dropout(float(dropout)))
            c = d
        self.net = nn.Sequential(*layers)
        self.in_dim = in_dim
        self.out_dim = c

    def forward(self, x: Tensor) -> Tensor:
        """Encode ``(B, in_dim)`` (or ``(B, ...)``, ``in_dim`` entries) into ``(B, out_dim)``."""
        if x.dim() > 2:
            x = x.flatten(1)
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(
                f"MLPEncoder expects input of shape (B, {self.in_dim}); got {tuple(x.shape)}"
            )
        out: Tensor = self.net(x)
        return out
