"""The 2-D scattering transform in plain torch, and ScatSimCLR's ScatNet + adapter encoder.

Scattering transform (Mallat, "Group Invariant Scattering", 2012; Bruna & Mallat, "Invariant
Scattering Convolution Networks", 2013). With a Gaussian low-pass ``phi_J`` at scale ``2^J`` and
Morlet wavelets ``psi_{j, theta}`` at scales ``j = 0 .. J-1`` and ``L`` orientations, the
coefficients of an image ``x`` are, each subsampled by ``2^J``::

    order 0:  x * phi_J
    order 1:  |x * psi_{j1, t1}| * phi_J                              (J * L maps)
    order 2:  ||x * psi_{j1, t1}| * psi_{j2, t2}| * phi_J,  j2 > j1    (L^2 * J (J - 1) / 2 maps)

so ``1 + J L + L^2 J (J - 1) / 2`` maps per input channel (J = 2, L = 16: 289; L = 8: 81).

Why here and not kymatio: kymatio 0.3.0 (the current release) installs but does not import with
scipy >= 1.15 (its 3-D module imports ``scipy.special.sph_harm``, which scipy removed), so the
transform is implemented here. It follows kymatio's ``Scattering2D`` algorithm so that the outputs
agree to float32 rounding (tested against kymatio when it can be imported), which is what
ScatSimCLR was trained on:

- the image is reflect-padded to ``((M + 2^J) // 2^J + 1) * 2^J`` rows (columns alike), so the
  output, once one coefficient is cut from each border, is ``M // 2^J`` by ``N // 2^J``;
- filters are built in the Fourier domain on the padded grid: a Gabor filter is the periodised
  sum over 5 x 5 copies of ``exp(-u^T C u + i xi (u_1 cos t + u_2 sin t)) / (2 * 3.1415 * sigma^2 /
  slant)`` with ``C = R_t diag(1, slant^2) R_t^T / (2 sigma^2)``; the Morlet wavelet subtracts
  ``beta`` times the Gaussian envelope so that it has zero mean; wavelet ``(j, t)`` has
  ``sigma = 0.8 * 2^j``, ``xi = 3 pi / 4 / 2^j``, ``slant = 4 / L`` and angle
  ``(L // 2 - 1 - t) * pi / L`` (``int(L - L / 2 - 1)``); ``phi`` is the Gaussian with
  ``sigma = 0.8 * 2^(J-1)``. The constant 3.1415 (not pi) is kymatio's; it scales every filter by
  pi / 3.1415 - 1 = 3e-5 and is kept for agreement;
- a filter used at resolution ``2^-r`` is the full-size Fourier filter with its frequencies above
  the new Nyquist band set to zero, then periodised (summed over aliases); subsampling a signal by
  ``k`` is done in the Fourier domain (mean over the ``k x k`` aliases), followed by an inverse FFT
  at the small size, exactly as kymatio does.

Only the order of operations differs (orientations are batched), which changes the float rounding,
not the result.

ScatNet + adapter (Kinakh, Taran & Voloshynovskiy, "ScatSimCLR: self-supervised contrastive
learning with pretext task regularization for small-scale datasets", 2021; docs/methods.md, section 3.9): the
fixed scattering transform per colour channel, batch norm, a 3x3 conv-BN-ReLU stem, stages of
residual blocks, adaptive average pooling to 4 x 4 and flattening: ``h`` has ``128 * 16 = 2048``
entries for the paper's adapters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.models.resnet import make_stage

__all__ = [
    "ADAPTER_LAYOUTS",
    "ScatNetEncoder",
    "Scattering2D",
    "scattering_channels",
    "scattering_filter_bank",
]

_KYMATIO_PI = 3.1415  # kymatio's Gabor normalisation constant (see the module docstring)


def scattering_channels(J: int, L: int, max_order: int = 2) -> int:
    """Number of scattering maps per input channel: ``1 + J L (+ L^2 J (J - 1) / 2 at order 2)``."""
    n = 1 + L * J
    if max_order == 2:
        n += L * L * J * (J - 1) // 2
    return n


def _padded_size(m: int, J: int) -> int:
    return ((m + 2**J) // 2**J + 1) * 2**J


def _gabor(m: int, n: int, sigma: float, theta: float, xi: float, slant: float) -> Tensor:
    """Periodised complex Gabor filter on an ``m x n`` grid (float64 / complex128), origin at 0."""
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    curv = rot @ torch.diag(torch.tensor([1.0, slant * slant], dtype=torch.float64)) @ rot.T
    curv = curv / (2.0 * sigma * sigma)
    shifts = torch.arange(-2, 3, dtype=torch.float64)
    u = (torch.arange(m, dtype=torch.float64).view(1, m) + m * shifts.view(5, 1)).view(5, 1, m, 1)
    v = (torch.arange(n, dtype=torch.float64).view(1, n) + n * shifts.view(5, 1)).view(1, 5, 1, n)
    quad = curv[0, 0] * u * u + (curv[0, 1] + curv[1, 0]) * u * v + curv[1, 1] * v * v
    phase = xi * (u * c + v * s)
    g = torch.exp(torch.complex(-quad, phase)).sum(dim=(0, 1))
    return g / (2.0 * _KYMATIO_PI * sigma * sigma / slant)


def _morlet(m: int, n: int, sigma: float, theta: float, xi: float, slant: float) -> Tensor:
    """Gabor filter minus the multiple of its envelope that makes its sum zero."""
    wave = _gabor(m, n, sigma, theta, xi, slant)
    envelope = _gabor(m, n, sigma, theta, 0.0, slant)
    return wave - (wave.sum() / envelope.sum()) * envelope


def _periodize(f: Tensor, res: int) -> Tensor:
    """Fourier filter ``(m, n)`` at resolution ``2^-res``: high band zeroed, aliases summed."""
    if res == 0:
        return f
    m, n = f.shape
    k = 2**res
    g = f.clone()
    start_m, len_m = int(m * 2 ** (-res - 1)), int(m * (1 - 2 ** (-res)))
    start_n, len_n = int(n * 2 ** (-res - 1)), int(n * (1 - 2 ** (-res)))
    g[start_m : start_m + len_m, :] = 0
    g[:, start_n : start_n + len_n] = 0
    return g.view(k, m // k, k, n // k).sum(dim=(0, 2))


def scattering_filter_bank(
    m: int, n: int, J: int, L: int
) -> tuple[list[Tensor], list[list[Tensor]]]:
    """Fourier-domain filters on an ``m x n`` (padded) grid, float64.

    Args:
        m: Padded height (a multiple of ``2^J``).
        n: Padded width (a multiple of ``2^J``).
        J: Number of scales.
        L: Number of orientations.

    Returns:
        ``(phi, psi)``: ``phi[r]`` is the low-pass filter at resolution ``2^-r`` (``r < J``), shape
        ``(m / 2^r, n / 2^r)``; ``psi[j][r]`` stacks the ``L`` wavelets of scale ``j`` at
        resolution ``2^-r`` (``r <= j``), shape ``(L, m / 2^r, n / 2^r)``.
    """
    psi: list[list[Tensor]] = []
    for j in range(J):
        fourier = []
        for t in range(L):
            theta = (int(L - L / 2 - 1) - t) * math.pi / L
            w = _morlet(m, n, 0.8 * 2**j, theta, 3.0 / 4.0 * math.pi / 2**j, 4.0 / L)
            fourier.append(torch.fft.fft2(w).real)  # imaginary part is zero up to rounding
        psi.append([torch.stack([_periodize(f, r) for f in fourier]) for r in range(j + 1)])
    phi_full = torch.fft.fft2(_gabor(m, n, 0.8 * 2 ** (J - 1), 0.0, 0.0, 1.0)).real
    phi = [_periodize(phi_full, r) for r in range(J)]
    return phi, psi


def _subsample(x: Tensor, k: int) -> Tensor:
    """Fourier-domain subsampling of ``(..., m, n)`` by ``k``: the mean over the ``k x k`` aliases.

    Its inverse FFT is the inverse FFT of ``x`` read at every ``k``-th row and column. The aliases
    are summed as slices (a strided ``mean`` over complex dims is several times slower on CPUs).
    """
    if k == 1:
        return x
    m, n = x.shape[-2] // k, x.shape[-1] // k
    rows = x[..., :m, :]
    for i in range(1, k):
        rows = rows + x[..., i * m : (i + 1) * m, :]
    out = rows[..., :n]
    for j in range(1, k):
        out = out + rows[..., j * n : (j + 1) * n]
    return out * (1.0 / (k * k))


class Scattering2D(nn.Module):
    """2-D scattering transform (Morlet wavelets, ``J`` scales, ``L`` angles, order 1 or 2).

    Non-trainable: the filters are buffers (not saved in the state dict, they are rebuilt from
    ``J``, ``L`` and ``shape``). Output coefficients are ordered as kymatio's: order 0, then order
    1 by ``(j1, theta1)``, then order 2 by ``(j1, theta1, j2, theta2)``.

    Example:
        >>> s = Scattering2D(J=2, shape=(28, 28), L=8)
        >>> s(torch.rand(4, 1, 28, 28)).shape
        torch.Size([4, 1, 81, 7, 7])

    Args:
        J: Number of scales (>= 1); the output is subsampled by ``2^J``.
        shape: Input ``(height, width)``.
        L: Number of orientations (>= 1).
        max_order: 1 or 2.

    Attributes:
        out_channels: Maps per input channel (:func:`scattering_channels`).
        out_shape: Spatial size of the output, ``(height // 2^J, width // 2^J)``.
    """

    def __init__(self, *, J: int, shape: Sequence[int], L: int = 8, max_order: int = 2) -> None:
        super().__init__()
        for name, v in (("J", J), ("L", L)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1; got {v!r}")
        if max_order not in (1, 2):
            raise ValueError(f"max_order must be 1 or 2; got {max_order!r}")
        if len(shape) != 2 or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape
        ):
            raise ValueError(f"shape must be (height, width), two positive ints; got {shape!r}")
        m, n = int(shape[0]), int(shape[1])
        mp, np_ = _padded_size(m, J), _padded_size(n, J)
        top, left = (mp - m) // 2, (np_ - n) // 2
        self.padding = (left, np_ - n - left, top, mp - m - top)  # F.pad order
        if max(self.padding[2:]) >= m or max(self.padding[:2]) >= n:
            raise ValueError(
                f"an image of shape {tuple(shape)} is too small for J={J}: reflect padding to "
                f"{mp}x{np_} needs each side > {max(self.padding)} pixels; use a smaller J"
            )
        self.J, self.L, self.max_order = J, L, max_order
        self.shape = (m, n)
        self.out_channels = scattering_channels(J, L, max_order)
        self.out_shape = (m // 2**J, n // 2**J)
        phi, psi = scattering_filter_bank(mp, np_, J, L)
        for r, f in enumerate(phi):
            self.register_buffer(f"phi_{r}", f, persistent=False)
        for j, levels in enumerate(psi):
            for r, f in enumerate(levels):
                self.register_buffer(f"psi_{j}_{r}", f, persistent=False)

    def extra_repr(self) -> str:
        """Show the parameters in ``repr``."""
        return f"J={self.J}, shape={self.shape}, L={self.L}, max_order={self.max_order}"

    def _filter(self, name: str, dtype: torch.dtype) -> Tensor:
        f: Tensor = getattr(self, name)
        return f.to(dtype)

    def forward(self, x: Tensor) -> Tensor:
        """Scattering coefficients of ``x`` of shape ``(..., H, W)``.

        Args:
            x: Real tensor whose last two dimensions are ``shape``; float32 or float64 (half
                precision is computed in float32 and cast back).

        Returns:
            Tensor of shape ``(..., out_channels, H // 2^J, W // 2^J)``, same dtype as ``x``.
        """
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(
                f"x must be a floating-point tensor; got {type(x).__name__}"
                + (f" of dtype {x.dtype}" if isinstance(x, Tensor) else "")
            )
        if x.dim() < 2 or tuple(x.shape[-2:]) != self.shape:
            raise ValueError(
                f"x must have shape (..., {self.shape[0]}, {self.shape[1]}) (the shape given at "
                f"construction); got {tuple(x.shape)}"
            )
        batch = x.shape[:-2]
        work = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        out = self._scatter(work.reshape(-1, *self.shape))
        return out.reshape(*batch, *out.shape[1:]).to(x.dtype)

    def _scatter(self, x: Tensor) -> Tensor:
        J, L = self.J, self.L
        dt = x.dtype
        xp = F.pad(x.unsqueeze(1), self.padding, mode="reflect").squeeze(1)
        X = torch.fft.fft2(xp)  # (B, M, N)

        def low(u: Tensor, j: int) -> Tensor:
            """Low-pass a spectrum at resolution 2^-j, subsample to 2^-J, back to space, unpad."""
            s = _subsample(u * self._filter(f"phi_{j}", dt), 2 ** (J - j))
            return torch.fft.ifft2(s).real[..., 1:-1, 1:-1]

        def modulus_spectrum(u: Tensor, k: int) -> Tensor:
            """Subsample a filtered spectrum by k, take the modulus in space, back to Fourier."""
            return torch.fft.fft2(torch.fft.ifft2(_subsample(u, k)).abs())

        b = x.shape[0]
        order0 = low(X, 0).unsqueeze(1)  # (B, 1, h, w)
        order1: list[Tensor] = []
        order2: list[Tensor] = []
        for j1 in range(J):
            # (B, L, M_j1, N_j1): first-order wavelet moduli at resolution 2^-j1, in Fourier.
            U1 = modulus_spectrum(X.unsqueeze(1) * self._filter(f"psi_{j1}_0", dt), 2**j1)
            order1.append(low(U1, j1))
            if self.max_order < 2 or j1 == J - 1:
                continue
            per_theta = []
            for t1 in range(L):  # one orientation at a time bounds the memory by B * L * M * N
                u = U1[:, t1].unsqueeze(1)
                blocks = [
                    low(
                        modulus_spectrum(u * self._filter(f"psi_{j2}_{j1}", dt), 2 ** (j2 - j1)), j2
                    )
                    for j2 in range(j1 + 1, J)
                ]
                per_theta.append(torch.cat(blocks, dim=1))  # (B, (J - j1 - 1) L, h, w)
            order2.append(torch.stack(per_theta, dim=1).reshape(b, -1, *order0.shape[-2:]))
        return torch.cat([order0, *order1, *order2], dim=1)


# Adapter layouts of the reference code (vkinakh/scatsimclr, src/models/scatnet_simclr.py), keyed by
# the number of residual blocks: (stem width, ((stage width, blocks), ...)). With J = 2, L = 16 on
# RGB input and the 2048-2048-128 head, the 8-block model has 6,106,214 parameters (paper: 6.1 M).
ADAPTER_LAYOUTS: dict[int, tuple[int, tuple[tuple[int, int], ...]]] = {
    8: (32, ((64, 4), (128, 4))),
    12: (256, ((128, 4), (64, 4), (128, 4))),
    16: (256, ((128, 6), (64, 4), (128, 6))),
    30: (256, ((128, 30),)),
    45: (256, ((128, 15), (64, 15), (128, 15))),
}


class ScatNetEncoder(nn.Module):
    """ScatSimCLR's encoder: fixed scattering transform + trainable convolutional adapter.

    ``x (B, C, H, W) -> Scattering2D per channel (B, C*K, H/2^J, W/2^J) -> [BatchNorm2d] ->
    conv3x3-BN-ReLU (stem) -> residual stages (stride 1) -> AdaptiveAvgPool(pool_size) -> flatten``,
    so ``out_dim = stages[-1][0] * pool_size**2`` (2048 for the paper's adapters).

    The adapter is either one of the paper's layouts (``n_blocks`` in 8, 12, 16, 30, 45, see
    :data:`ADAPTER_LAYOUTS`) or a custom one (``stem_width`` and ``stages``), e.g. a small one for
    28x28 grayscale images. Only the adapter (and the input batch norm) is trainable; the scattering
    filters are buffers, so :func:`~contrastkit.models.count_parameters` counts the trainable
    part only.

    The paper (and docs/methods.md, section 3.9) puts a batch norm on the scattering output; the reference code
    creates it (so its parameters are in the reference counts) but does not call it in ``forward``.
    ``input_batch_norm=True`` (default) applies it; ``False`` follows the reference forward pass
    (the parameters are then not created).

    Args:
        image_size: Input ``H`` (square) or ``(H, W)``.
        in_channels: Image channels; the transform runs on each separately.
        J: Scattering scales (paper: 2).
        L: Scattering orientations (paper: 16 for its best models; 8 is kymatio's default).
        max_order: Scattering order, 1 or 2 (paper: 2).
        n_blocks: A paper layout (8, 12, 16, 30 or 45 residual blocks); ignored if ``stages`` is
            given.
        stem_width: Stem channels of a custom adapter (default: the first stage's width).
        stages: Custom adapter: ``((width, blocks), ...)``.
        pool_size: Side of the adaptive average pooling (paper: 4).
        input_batch_norm: Batch-normalise the scattering maps before the adapter.

    Attributes:
        out_dim: Size of the representation ``h``.
        scattering: The :class:`Scattering2D` module.
    """

    def __init__(
        self,
        *,
        image_size: int | Sequence[int],
        in_channels: int = 3,
        J: int = 2,
        L: int = 16,
        max_order: int = 2,
        n_blocks: int = 8,
        stem_width: int | None = None,
        stages: Sequence[Sequence[int]] | None = None,
        pool_size: int = 4,
        input_batch_norm: bool = True,
    ) -> None:
        super().__init__()
        shape = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be an int >= 1; got {in_channels!r}")
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ValueError(f"pool_size must be an int >= 1; got {pool_size!r}")
        self.scattering = Scattering2D(J=J, shape=shape, L=L, max_order=max_order)
        if stages is None:
            if n_blocks not in ADAPTER_LAYOUTS:
                raise ValueError(
                    f"n_blocks must be one of the paper's layouts {sorted(ADAPTER_LAYOUTS)} (or "
                    f"pass stages=((width, blocks), ...)); got {n_blocks!r}"
                )
            default_stem, layout = ADAPTER_LAYOUTS[n_blocks]
            stem_width = default_stem if stem_width is None else stem_width
        else:
            layout = tuple((int(s[0]), int(s[1])) for s in stages)
            if (
                not layout
                or any(len(s) != 2 for s in stages)
                or any(w < 1 or b < 1 for w, b in layout)
            ):
                raise ValueError(
                    f"stages must be a non-empty list of (width, blocks) pairs of positive ints; "
                    f"got {stages!r}"
                )
            stem_width = layout[0][0] if stem_width is None else stem_width
        if isinstance(stem_width, bool) or not isinstance(stem_width, int) or stem_width < 1:
            raise ValueError(f"stem_width must be an int >= 1; got {stem_width!r}")
        self.in_channels = in_channels
        c = in_channels * self.scattering.out_channels
        self.scattering_channels = c
        self.input_norm: nn.Module = nn.BatchNorm2d(c) if input_batch_norm else nn.Identity()
        self.stem = nn.Sequential(
            nn.Conv2d(c, stem_width, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
        )
        blocks = []
        c = stem_width
        for width, n in layout:
            blocks.append(make_stage(c, width, n))
            c = width
        self.stages = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.out_dim = c * pool_size * pool_size

    def forward(self, x: Tensor) -> Tensor:
        """Encode images ``(B, in_channels, H, W)`` into ``(B, out_dim)``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ScatNetEncoder expects images of shape (B, {self.in_channels}, "
                f"{self.scattering.shape[0]}, {self.scattering.shape[1]}); got {tuple(x.shape)}"
            )
        with torch.no_grad():
            s = self.scattering(x)  # (B, C, K, h, w), fixed: no gradient to the input needed
        s = s.flatten(1, 2)
        h = self.stages(self.stem(self.input_norm(s)))
        return torch.flatten(self.pool(h), 1)
