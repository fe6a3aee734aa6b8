"""SLidR: image-to-lidar self-supervised distillation with superpixel-pooled InfoNCE.

Paper: Sautier, Puy, Gidaris, Boulch, Bursuc and Marlet, "Image-to-Lidar Self-Supervised
Distillation for Autonomous Driving Data" (CVPR 2022).

What the system does: a car carries a calibrated camera and a lidar. SLidR pre-trains a 3-D point
network without labels by distilling a frozen image network into it. The image is cut into
superpixels; each lidar point projects into one. Point features (3-D network + projection head)
and pixel features (frozen 2-D network) are averaged per superpixel
(:func:`contrastkit.losses.region_pool`), and an InfoNCE loss matches each superpixel's pooled point
feature to its pooled pixel feature, the other superpixels of the batch being negatives:

``L = -1/S sum_s log [exp(<f_s, g_s>/tau) / sum_s' exp(<f_s, g_s'>/tau)]``

with ``f_s``, ``g_s`` the normalised pooled point and pixel features and ``tau = 0.07``
(:class:`contrastkit.losses.InfoNCE` over the (point, pixel) pairs; the pixel side is frozen, so
only the point network learns). The baseline is the same distillation point by point (each point
paired with the pixel it projects to, the other points of the batch being negatives: the
point-to-pixel InfoNCE SLidR improves on), and an untrained point network. Every point network has
the same architecture and budget; its features are then frozen and a linear probe
(:func:`contrastkit.eval.linear_probe`) predicts each point's primitive class from few labelled
points.

Image network: a frozen, randomly initialised, fully convolutional CNN (three dilated 3x3 conv
layers, no pre-training), so the distilled targets are generic local appearance features (colour,
shading gradients, edges), not semantic ones. Point network: a small PointNet-like network, a
shared MLP over each point's 16 nearest neighbours' offsets, max-pooled and joined with the point's
own coordinates and covariance shape descriptors of its neighbourhood (normalised eigenvalues and
the normal's vertical component).

Data (simulated): seeded scenes of three to five primitives (spheres, boxes with a random yaw,
vertical cylinders; random sizes; colours drawn around a typical colour per class with a wide
spread, as real classes have typical appearances, so the image carries class information) standing
on a textured ground plane, in front of a pinhole camera (48 x 48 pixels, ray-cast Lambertian
shading with a random light, pixel noise) and a sparse range scanner at the same origin (32
elevation x 64 azimuth beams with jitter, returns inside the camera's field of view, 2 cm range
noise, ground returns thinned to a third). Superpixels are the rendered segment ids (one per object
and the ground) cut by a 6 x 6 grid of 8 x 8-pixel cells, standing in for SLIC on real images. The
probed classes are ground, sphere, box and cylinder, with balanced probe sets (so chance is 1/4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from contrastkit.apps._app import App, AppSettings, Measured
from contrastkit.eval import linear_probe
from contrastkit.losses import InfoNCE, region_pool
from contrastkit.train import StepOutput, train_custom

__all__ = ["APP", "LidarConfig", "PointEncoder", "Scene", "local_shape", "render_scene", "run"]

CLASSES = ("ground", "sphere", "box", "cylinder")
GROUND_Y = -1.0
NEIGHBOURS = 16
GROUND_KEEP = 0.35
# objects of a class have a typical colour (as cars, poles, vegetation do), with a wide spread
CLASS_COLOURS = np.array([[0.5, 0.5, 0.5], [0.8, 0.35, 0.3], [0.35, 0.7, 0.35], [0.35, 0.4, 0.85]])
COLOUR_SPREAD = 0.2


@dataclass(frozen=True)
class LidarConfig:
    """Sizes of one run (the quick form shrinks them)."""

    size: int = 48
    train_scenes: int = 128
    test_scenes: int = 64
    scenes_per_batch: int = 8
    epochs: int = 10
    lr: float = 2e-3
    temperature: float = 0.07
    cell: int = 8
    probe_points_per_class: int = 40
    test_points_per_class: int = 300


QUICK = LidarConfig(
    train_scenes=24, test_scenes=12, epochs=3, probe_points_per_class=20, test_points_per_class=60
)


@dataclass
class Scene:
    """One rendered scene.

    Attributes:
        image: ``(3, H, W)`` float32 camera image.
        segments: ``(H, W)`` int segment id of each pixel (-1 sky, 0 ground, 1.. objects).
        points: ``(P, 3)`` float32 lidar points (camera frame).
        pixels: ``(P,)`` int flat pixel index each point projects to.
        labels: ``(P,)`` int primitive class of each point (``CLASSES``).
    """

    image: np.ndarray
    segments: np.ndarray
    points: np.ndarray
    pixels: np.ndarray
    labels: np.ndarray


# -- ray casting ----------------------------------------------------------------------------------


def _hit_sphere(
    o: np.ndarray, d: np.ndarray, c: np.ndarray, r: float
) -> tuple[np.ndarray, np.ndarray]:
    oc = o - c
    b = (oc * d).sum(-1)
    disc = b * b - ((oc * oc).sum(-1) - r * r)
    t = -b - np.sqrt(np.maximum(disc, 0.0))
    t = np.where((disc > 0) & (t > 1e-4), t, np.inf)
    n = o + t[:, None] * d - c
    return t, n / r


def _hit_box(
    o: np.ndarray, d: np.ndarray, c: np.ndarray, half: np.ndarray, yaw: float
) -> tuple[np.ndarray, np.ndarray]:
    cs, sn = math.cos(yaw), math.sin(yaw)
    rot = np.array([[cs, 0.0, -sn], [0.0, 1.0, 0.0], [sn, 0.0, cs]])  # world -> box
    lo, ld = (o - c) @ rot.T, d @ rot.T
    ld = np.where(np.abs(ld) < 1e-9, 1e-9, ld)
    t1, t2 = (-half - lo) / ld, (half - lo) / ld
    tnear, tfar = np.minimum(t1, t2).max(-1), np.maximum(t1, t2).min(-1)
    axis = np.minimum(t1, t2).argmax(-1)
    t = np.where((tnear < tfar) & (tnear > 1e-4), tnear, np.inf)
    local_n = np.zeros_like(ld)
    rows = np.arange(len(ld))
    local_n[rows, axis] = -np.sign(ld[rows, axis])
    return t, local_n @ rot


def _hit_cylinder(
    o: np.ndarray, d: np.ndarray, c: np.ndarray, r: float, h: float
) -> tuple[np.ndarray, np.ndarray]:
    ox, oz, dx, dz = o[:, 0] - c[0], o[:, 2] - c[2], d[:, 0], d[:, 2]
    a = np.maximum(dx * dx + dz * dz, 1e-12)
    b = ox * dx + oz * dz
    disc = b * b - a * (ox * ox + oz * oz - r * r)
    t_side = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    y_side = o[:, 1] + t_side * d[:, 1]
    ok = (disc > 0) & (t_side > 1e-4) & (y_side >= c[1] - h / 2) & (y_side <= c[1] + h / 2)
    t_side = np.where(ok, t_side, np.inf)
    dy = np.where(np.abs(d[:, 1]) < 1e-9, 1e-9, d[:, 1])
    t_cap = (c[1] + h / 2 - o[:, 1]) / dy
    px, pz = o[:, 0] + t_cap * dx - c[0], o[:, 2] + t_cap * dz - c[2]
    t_cap = np.where((t_cap > 1e-4) & (px * px + pz * pz <= r * r), t_cap, np.inf)
    t = np.minimum(t_side, t_cap)
    p = o + t[:, None] * d
    n_side = np.stack([(p[:, 0] - c[0]) / r, np.zeros(len(p)), (p[:, 2] - c[2]) / r], axis=1)
    n_cap = np.tile(np.array([0.0, 1.0, 0.0]), (len(p), 1))
    return t, np.where((t_cap < t_side)[:, None], n_cap, n_side)


@dataclass(frozen=True)
class _Primitive:
    kind: int  # index into CLASSES
    centre: np.ndarray
    size: np.ndarray  # sphere (r,), box (half-x, half-y, half-z), cylinder (r, h)
    yaw: float
    colour: np.ndarray

    def hit(self, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == 1:
            return _hit_sphere(o, d, self.centre, float(self.size[0]))
        if self.kind == 2:
            return _hit_box(o, d, self.centre, self.size, self.yaw)
        return _hit_cylinder(o, d, self.centre, float(self.size[0]), float(self.size[1]))


def _primitives(rng: np.random.Generator) -> list[_Primitive]:
    out: list[_Primitive] = []
    for _ in range(int(rng.integers(3, 6))):
        kind = int(rng.integers(1, 4))
        x, z = rng.uniform(-1.8, 1.8), rng.uniform(3.0, 7.0)
        colour = np.clip(CLASS_COLOURS[kind] + rng.normal(0.0, COLOUR_SPREAD, 3), 0.05, 1.0)
        if kind == 1:
            r = rng.uniform(0.4, 0.8)
            size, y = np.array([r]), GROUND_Y + r
        elif kind == 2:
            size = rng.uniform(0.3, 0.7, 3)
            y = GROUND_Y + size[1]
        else:
            size = np.array([rng.uniform(0.25, 0.5), rng.uniform(0.8, 1.8)])
            y = GROUND_Y + size[1] / 2
        out.append(_Primitive(kind, np.array([x, y, z]), size, rng.uniform(0, math.pi), colour))
    return out


def _cast(prims: list[_Primitive], d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rays from the origin along ``d``: hit distance, normal and segment (-1 none, 0 ground)."""
    o = np.zeros_like(d)
    dy = np.where(d[:, 1] < -1e-6, d[:, 1], -1e-6)
    t_best = np.where(d[:, 1] < -1e-6, GROUND_Y / dy, np.inf)
    t_best = np.where(t_best < 40.0, t_best, np.inf)
    normal = np.tile(np.array([0.0, 1.0, 0.0]), (len(d), 1))
    seg = np.where(np.isfinite(t_best), 0, -1)
    for i, prim in enumerate(prims, start=1):
        t, n = prim.hit(o, d)
        closer = t < t_best
        t_best = np.where(closer, t, t_best)
        normal = np.where(closer[:, None], n, normal)
        seg = np.where(closer, i, seg)
    return t_best, normal, seg


def render_scene(rng: np.random.Generator, size: int = 48, fov: float = 1.0) -> Scene:
    """Draw a scene and render its camera image, segments and lidar points.

    Args:
        rng: The generator of every random choice.
        size: Image height and width.
        fov: The camera's horizontal and vertical field of view (radians).

    Returns:
        A :class:`Scene`.
    """
    prims = _primitives(rng)
    focal = size / (2 * math.tan(fov / 2))
    v, u = np.mgrid[0:size, 0:size]
    d = np.stack(
        [
            (u.ravel() + 0.5 - size / 2) / focal,
            -(v.ravel() + 0.5 - size / 2) / focal,
            np.ones(size * size),
        ],
        axis=1,
    )
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    t, normal, seg = _cast(prims, d)
    light = np.array([rng.uniform(-1, 1), rng.uniform(0.5, 1.5), rng.uniform(-1.5, -0.3)])
    light /= np.linalg.norm(light)
    shade = 0.25 + 0.75 * np.clip(normal @ light, 0.0, 1.0)
    p = np.where(np.isfinite(t), t, 0.0)[:, None] * d
    ground_tex = 0.45 + 0.1 * np.sign(np.sin(2.0 * p[:, 0]) * np.sin(2.0 * p[:, 2]))
    colours = np.stack([np.full(3, 0.5)] + [pr.colour for pr in prims])
    albedo = np.where(
        (seg == 0)[:, None],
        ground_tex[:, None] * np.array([0.8, 0.75, 0.6]),
        colours[np.maximum(seg, 0)],
    )
    image = np.where((seg >= 0)[:, None], albedo * shade[:, None], np.array([0.6, 0.75, 0.95]))
    image = image + rng.normal(0.0, 0.03, image.shape)
    # the range scanner: 32 x 64 jittered beams, kept inside the camera's field of view
    half = fov / 2 * 0.98
    el = np.linspace(-half, half, 32)[:, None] + rng.normal(0, 0.004, (32, 64))
    az = np.linspace(-half, half, 64)[None, :] + rng.normal(0, 0.004, (32, 64))
    beams = np.stack([np.tan(az.ravel()), np.tan(el.ravel()), np.ones(el.size)], axis=1)
    beams /= np.linalg.norm(beams, axis=1, keepdims=True)
    bt, _, bseg = _cast(prims, beams)
    # returns from the ground are thinned to a third (they would be three quarters of the points)
    hit = np.isfinite(bt) & ((bseg != 0) | (rng.random(bt.shape) < GROUND_KEEP))
    pts = (bt[hit] + rng.normal(0, 0.02, int(hit.sum())))[:, None] * beams[hit]
    pu = np.clip((pts[:, 0] / pts[:, 2] * focal + size / 2).astype(int), 0, size - 1)
    pv = np.clip((-pts[:, 1] / pts[:, 2] * focal + size / 2).astype(int), 0, size - 1)
    kinds = np.array([0] + [pr.kind for pr in prims])
    return Scene(
        image=np.clip(image, 0, 1).T.reshape(3, size, size).astype(np.float32),
        segments=seg.reshape(size, size),
        points=pts.astype(np.float32),
        pixels=pv * size + pu,
        labels=kinds[bseg[hit]],
    )


# -- networks -------------------------------------------------------------------------------------


class PointEncoder(nn.Module):
    """PointNet-like local encoder: a shared MLP over the neighbours' offsets, max-pooled, joined
    with the point's coordinates.

    Args:
        dim: Feature dimension.
    """

    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.local = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
        self.out = nn.Sequential(nn.Linear(64 + 3 + 4, 128), nn.ReLU(), nn.Linear(128, dim))

    def forward(self, xyz: Tensor, offsets: Tensor, shape: Tensor) -> Tensor:
        """``xyz (P, 3)``, ``offsets (P, K, 3)``, ``shape (P, 4)`` (:func:`local_shape`) ->
        features ``(P, dim)``."""
        dist = offsets.norm(dim=-1, keepdim=True)
        local = self.local(torch.cat([offsets, dist], dim=-1)).amax(dim=1)
        return self.out(torch.cat([local, xyz / 5.0, shape], dim=-1))


def local_shape(offsets: Tensor) -> Tensor:
    """Covariance shape descriptors of each neighbourhood: ``(P, 4)``.

    The eigenvalues of the neighbours' covariance, normalised to sum to 1 (ascending: a plane has a
    small first one, a line two small ones), and the absolute vertical component of the normal (the
    eigenvector of the smallest eigenvalue).
    """
    centred = offsets - offsets.mean(dim=1, keepdim=True)
    cov = centred.transpose(1, 2) @ centred / offsets.shape[1]
    values, vectors = torch.linalg.eigh(cov)
    values = values.clamp(min=0)
    values = values / values.sum(dim=1, keepdim=True).clamp(min=1e-12)
    return torch.cat([values, vectors[:, 1:2, 0].abs()], dim=1)


def _image_encoder(dim: int = 32) -> nn.Module:
    net = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=2, dilation=2),
        nn.ReLU(),
        nn.Conv2d(32, dim, 3, padding=4, dilation=4),
    )
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


# -- data preparation -----------------------------------------------------------------------------


@dataclass
class _Batchable:
    xyz: Tensor  # (P, 3)
    offsets: Tensor  # (P, K, 3)
    shape: Tensor  # (P, 4) local_shape
    pixel_feats: Tensor  # (P, D) frozen image feature at each point's pixel
    region: Tensor  # (P,) superpixel id (scene-local)
    region_feats: Tensor  # (R, D) pooled frozen image features of the scene's superpixels
    labels: Tensor  # (P,)


def _prepare(scene: Scene, image_net: nn.Module, cell: int) -> _Batchable:
    xyz = torch.from_numpy(scene.points)
    k = min(NEIGHBOURS, len(xyz) - 1)
    nn_idx = torch.cdist(xyz, xyz).topk(k + 1, largest=False).indices[:, 1:]
    offsets = xyz[nn_idx] - xyz[:, None, :]
    with torch.no_grad():
        fmap = image_net(torch.from_numpy(scene.image)[None])[0]  # (D, H, W)
    d, h, w = fmap.shape
    flat = fmap.reshape(d, h * w).T
    grid = (np.arange(h)[:, None] // cell) * (w // cell + 1) + np.arange(w)[None, :] // cell
    sp = torch.from_numpy(((scene.segments + 1) * 1000 + grid).ravel())
    _, sp_ids = torch.unique(sp, return_inverse=True)
    region_feats, _ = region_pool(flat, sp_ids)
    pix = torch.from_numpy(scene.pixels).long()
    return _Batchable(
        xyz,
        offsets,
        local_shape(offsets),
        flat[pix],
        sp_ids[pix],
        region_feats,
        torch.from_numpy(scene.labels).long(),
    )


def _probe_set(
    encoder: PointEncoder, scenes: list[_Batchable], per_class: int, seed: int
) -> tuple[Tensor, Tensor]:
    """Frozen features of ``per_class`` random points of each class (balanced)."""
    with torch.no_grad():
        feats = torch.cat([encoder(s.xyz, s.offsets, s.shape) for s in scenes])
    labels = torch.cat([s.labels for s in scenes])
    gen = torch.Generator().manual_seed(seed)
    keep = []
    for c in range(len(CLASSES)):
        idx = torch.nonzero(labels == c).flatten()
        keep.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]])
    sel = torch.cat(keep)
    return feats[sel], labels[sel]


# -- training -------------------------------------------------------------------------------------


def _train(
    scenes: list[_Batchable], cfg: LidarConfig, pooled: bool, seed: int
) -> tuple[PointEncoder, list[float]]:
    torch.manual_seed(seed)
    encoder = PointEncoder()
    head = nn.Linear(64, scenes[0].pixel_feats.shape[1])
    nce = InfoNCE(temperature=cfg.temperature)
    gen = torch.Generator().manual_seed(seed + 1)

    def step(batch: list[int]) -> StepOutput:
        fs, gs = [], []
        for i in batch:
            s = scenes[i]
            f = head(encoder(s.xyz, s.offsets, s.shape))
            if pooled:
                f, present = region_pool(f, s.region, len(s.region_feats))
                fs.append(f[present])
                gs.append(s.region_feats[present])
            else:  # as many points as the pooled form has superpixels, drawn at random
                n = int(torch.unique(s.region).numel())
                pick = torch.randperm(len(f), generator=gen)[:n]
                fs.append(f[pick])
                gs.append(s.pixel_feats[pick])
        views = torch.stack([torch.cat(fs), torch.cat(gs)], dim=1)
        return StepOutput(loss=nce(views), samples=len(batch))

    def batches(epoch: int) -> list[list[int]]:
        order = torch.randperm(len(scenes), generator=gen).tolist()
        return [
            order[i : i + cfg.scenes_per_batch] for i in range(0, len(order), cfg.scenes_per_batch)
        ]

    history = train_custom(
        [encoder, head], step, batches, epochs=cfg.epochs, lr=cfg.lr, name="slidr point encoder"
    )
    return encoder, [h.loss for h in history]


def run(settings: AppSettings) -> dict[str, Measured]:
    """Distil the frozen image network into point encoders (pooled, point-wise); probe them."""
    cfg = QUICK if settings.quick else LidarConfig()
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    image_net = _image_encoder()
    train = [
        _prepare(render_scene(rng, cfg.size), image_net, cfg.cell) for _ in range(cfg.train_scenes)
    ]
    test = [
        _prepare(render_scene(rng, cfg.size), image_net, cfg.cell) for _ in range(cfg.test_scenes)
    ]
    out: dict[str, Measured] = {}
    for name in ("slidr", "pointwise", "random_init"):
        if name == "random_init":
            torch.manual_seed(settings.seed)
            encoder, losses = PointEncoder(), list[float]()
        else:
            encoder, losses = _train(train, cfg, name == "slidr", settings.seed)
        encoder.eval()
        x_tr, y_tr = _probe_set(encoder, train, cfg.probe_points_per_class, settings.seed)
        x_te, y_te = _probe_set(encoder, test, cfg.test_points_per_class, settings.seed + 1)
        probe = linear_probe(
            x_tr,
            y_tr,
            x_te,
            y_te,
            weight_decays=(1e-3, 1e-2, 1e-1),
            max_iter=100,
            seed=settings.seed,
        )
        out[name] = Measured(metrics={"probe_accuracy": probe.accuracy}, losses=losses)
    return out


APP = App(
    name="slidr",
    title="Lidar point features distilled from a frozen image network by superpixel-pooled InfoNCE",
    paper=(
        "Sautier, Puy, Gidaris, Boulch, Bursuc and Marlet, Image-to-Lidar Self-Supervised "
        "Distillation for Autonomous Driving Data (CVPR 2022)"
    ),
    data=(
        "simulated: seeded ray-cast scenes of spheres, boxes and cylinders on a ground plane, seen "
        "by a 48x48 pinhole camera and a sparse 32x64-beam range scanner at the same origin; "
        "superpixels are rendered segments cut by an 8-pixel grid"
    ),
    claim=(
        "Pooling point and pixel features over superpixels before the image-to-lidar InfoNCE "
        "gives better 3-D point features than point-to-pixel contrast."
    ),
    method="slidr",
    baselines=("pointwise", "random_init"),
    metric="probe_accuracy",
    chance=0.25,
    run=run,
)
