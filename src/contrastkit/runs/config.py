"""The configuration of one training run, validated on construction.

:func:`config_from_mapping` builds a :class:`FitConfig` from plain data (a recipe file, ``--set``
overrides, ``config.json``) and checks it first: an unknown key or a value of the wrong type is a
``ValueError`` that names the key, what it expected, and the allowed keys.

The configuration lives below the training code (``contrastkit.runs``) because a run directory's
``config.json`` is read back by evaluation and reporting as well as by training;
``contrastkit.train.config`` re-exports it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contrastkit._validation import (
    check_choice,
    check_keyword_arguments,
    check_positive,
    keyword_parameters,
)
from contrastkit.data import DataSplit, load_dataset
from contrastkit.data.paired import PairedSplit, load_pairs
from contrastkit.losses import LossInfo, loss_info
from contrastkit.models.registry import check_encoder_kwargs, encoder_names
from contrastkit.models.text import TextTransformer
from contrastkit.views.pipeline import check_augment
from contrastkit.views.pretext import JigsawPretext, RotationPretext

__all__ = [
    "TWO_TOWER_LOSSES",
    "FitConfig",
    "check_value_type",
    "config_from_mapping",
    "config_keys",
    "default_out_dir",
    "is_caption_data",
]

OPTIMIZERS = ("adamw", "sgd", "lars")
SCHEDULES = ("cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
PRETEXTS = ("none", "rotation", "jigsaw")
#: The batch-order strategies of :mod:`contrastkit.train.strategies` and the ``strategy_kwargs``
#: each accepts: the keyword arguments of ``fit_gsimclr`` / ``fit_mcl`` that a configuration may
#: set (``tests/runs/test_runs_config.py`` checks that the two agree).
STRATEGY_KWARGS: dict[str, tuple[str, ...]] = {
    "gsimclr": (
        "baseline",
        "dae_epochs",
        "dae_latent_dim",
        "dae_noise_std",
        "n_clusters",
        "reshuffle",
    ),
    "mcl": ("baseline", "epochs_per_stage", "k", "stages"),
}
STRATEGIES = ("standard", *STRATEGY_KWARGS)
#: Where ``contrastkit fit`` writes a run when no ``out`` is given.
RUNS_DIR = "runs"
# SmallCNN's arguments have their own config keys (kept from before encoders could be chosen).
_SMALLCNN_KEYS = ("widths", "strides", "pool_size")
_RESERVED_LOSS_KWARGS = ("reduction",)
#: Losses that train a two-tower model on paired data (``pairs`` or a caption set as ``data``).
TWO_TOWER_LOSSES = ("clip", "cliprocket", "milnce", "sogclr_bimodal", "isogclr_bimodal")
#: ``text_kwargs`` keys of the tokenizer (the others are the text transformer's arguments).
TOKENIZER_KWARGS = ("vocab_size", "min_frequency")
# Set by the trainer from the encoder and the config's pretext_* keys.
_RESERVED_PRETEXT_KWARGS = ("in_dim", "weight", "start_epoch", "augment")


@dataclass
class FitConfig:
    """Everything that defines a training run; saved as ``config.json`` in the run directory.

    ``temperature=None`` (the default) keeps the loss's own documented default; a recipe or the user
    sets it to override it. ``loss_kwargs`` passes further keyword arguments to the loss.
    ``precision="auto"`` uses bf16 autocast where the device supports it fast (CUDA with bf16, or a
    CPU with AMX/AVX512-BF16) and float32 elsewhere.

    ``batch_size`` is the global batch: under torchrun each of the P processes takes ``batch_size /
    P`` instances of it. Checkpoints go to ``<out>/checkpoints`` every ``checkpoint_every``
    optimizer steps (0: only at epoch ends) and at the end of every epoch; the last
    ``keep_checkpoints`` are kept. ``grad_clip`` clips the global gradient norm (None: no clipping).
    ``monitor_every`` calls ``contrastkit.eval.monitor.epoch_metrics`` (a subset kNN and the
    alignment, uniformity and tolerance of ``h`` and ``z``) every that many epochs (0: never); the
    default ``None`` follows ``contrastkit.eval.monitor.auto_monitor_every``: every epoch when the
    training set holds at least 1,000 samples, else every ``ceil(1000 / n_train)`` epochs (the
    monitor's cost is bounded, so its share of an epoch falls as the data grow; two-tower runs are
    not monitored). ``tensorboard`` also writes TensorBoard events when the ``tensorboard`` package is
    installed; ``evaluate=False`` skips the final kNN / linear-probe evaluation.

    ``data`` is a dataset name, an ``.npz`` file or a folder of class folders of images
    (:func:`contrastkit.data.load_dataset`); ``data_image_size`` resizes a folder's images to
    that square size (None: they must share one size).

    Two towers (image-text, or any two modalities): a loss of :data:`TWO_TOWER_LOSSES` with paired
    data, either ``pairs`` (a CSV/TSV file of image paths and captions, read with ``csv_img_key``,
    ``csv_caption_key``, ``csv_separator`` and the optional ``csv_label_key``, or an ``.npz`` of
    ``a_train, b_train, a_test, b_test``; :func:`contrastkit.data.paired.load_pairs`) or a built-in
    caption set as ``data`` (``digits-captions``, ``fashion-mnist-captions``). ``head_out_dim`` is
    then the shared dimension of the linear projections, ``encoder`` the image tower, and
    ``text_kwargs`` sets the text tower (``context_length``, ``width``, ``layers``, ``heads``,
    ``mlp_ratio``, ``dropout``) and its tokenizer (``vocab_size``, ``min_frequency``).
    ``captions_per_image`` generates that many captions per training image of a caption set: the
    bags of candidate positives of ``milnce`` (MIL-NCE). ``views`` is
    the number of CLIP-rocket's augmented views (the other losses use one light view per image),
    ``augment`` their view preset.

    Example:
        >>> FitConfig(loss="dcl", epochs=5).temperature is None  # DCL's own default applies
        True
    """

    loss: str = "ntxent"
    data: str = "digits"
    data_root: str | None = None
    data_image_size: int | None = None
    pairs: str | None = None
    csv_img_key: str = "filepath"
    csv_caption_key: str = "title"
    csv_separator: str | None = None
    csv_label_key: str | None = None
    text_kwargs: dict[str, Any] = field(default_factory=dict)
    captions_per_image: int = 1
    epochs: int = 40
    batch_size: int = 256
    views: int = 2
    temperature: float | None = None
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_epochs: int = 2
    encoder: str = "smallcnn"
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    encoder_widths: tuple[int, ...] = (32, 32, 64, 64, 128, 128)
    encoder_strides: tuple[int, ...] = (1, 1, 2, 1, 2, 1)
    encoder_pool: int = 1
    head_hidden_dim: int = 512
    head_out_dim: int = 128
    augment: str | None = None
    pretext: str = "none"
    pretext_weight: float = 0.3
    pretext_start_epoch: int = 0
    pretext_kwargs: dict[str, Any] = field(default_factory=dict)
    strategy: str = "standard"
    strategy_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    out: str = "runs/latest"
    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None
    knn_k: int = 20
    knn_temperature: float = 0.07
    progress: bool = True
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    grad_clip: float | None = None
    monitor_every: int | None = None
    tensorboard: bool = True
    evaluate: bool = True

    def __post_init__(self) -> None:
        info = _check_loss_kind(self.loss, two_tower=self.two_tower)
        _check_counts(self)
        _check_loss_use(self, info)
        _check_optimisation(self)
        _check_encoder(self)
        _check_pretext(self)
        _check_strategy(self.strategy, self.strategy_kwargs, self.pretext)
        _check_pairs(self)

    @property
    def two_tower(self) -> bool:
        """Whether the run trains two towers: ``pairs`` is set or ``data`` names a caption set."""
        return self.pairs is not None or is_caption_data(self.data)

    def load_pairs(self, root: str | None = None) -> PairedSplit:
        """The paired train/test split of a two-tower run (``root`` overrides ``data_root``)."""
        if self.pairs is not None:
            return load_pairs(
                self.pairs,
                img_key=self.csv_img_key,
                caption_key=self.csv_caption_key,
                separator=self.csv_separator,
                label_key=self.csv_label_key,
                image_size=self.data_image_size,
                seed=self.seed,
            )
        from contrastkit.data.captions import load_caption_dataset

        return load_caption_dataset(
            self.data,
            seed=self.seed,
            root=root or self.data_root,
            captions_per_image=self.captions_per_image,
        )

    def load_data(self, root: str | None = None) -> DataSplit:
        """The train/test split this configuration names (``root`` overrides ``data_root``)."""
        return load_dataset(
            self.data,
            root=root or self.data_root,
            seed=self.seed,
            image_size=self.data_image_size,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the configuration."""
        d = dataclasses.asdict(self)
        d["encoder_widths"] = list(self.encoder_widths)
        d["encoder_strides"] = list(self.encoder_strides)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FitConfig:
        """Build a config from a dict; unknown keys and wrong types are errors (see below)."""
        return config_from_mapping(data)


def default_out_dir(values: Mapping[str, Any], recipe: str | None = None) -> str:
    """The run directory ``contrastkit fit`` uses when no ``out`` is given.

    ``runs/<recipe or loss>-<data>``, where ``<data>`` is the dataset name, or the file name
    without ``.npz`` for an array file; missing keys take :class:`FitConfig`'s defaults.

    Args:
        values: Configuration values (a recipe's, with the command line's overrides applied).
        recipe: The recipe's name, if the run comes from one.

    Returns:
        The directory, e.g. ``"runs/ntxent-digits"``.

    Example:
        >>> default_out_dir({"loss": "dcl", "data": "data/points.npz"})
        'runs/dcl-points'
        >>> default_out_dir({}, recipe="simclr")
        'runs/simclr-digits'
    """
    data = str(values.get("data", FitConfig.data))
    data_tag = Path(data).stem if data.endswith(".npz") else data
    if values.get("pairs"):
        data_tag = Path(str(values["pairs"])).stem
    label = recipe if recipe is not None else str(values.get("loss", FitConfig.loss))
    return f"{RUNS_DIR}/{label}-{data_tag}"


def _is_int(value: object, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def is_caption_data(name: str) -> bool:
    """Whether the dataset name is a built-in caption set (``digits-captions``, ...).

    Example:
        >>> is_caption_data("fashion-mnist-captions"), is_caption_data("digits")
        (True, False)
    """
    return isinstance(name, str) and name.strip().lower().replace("_", "-").endswith("-captions")


def _check_loss_kind(loss: str, *, two_tower: bool = False) -> LossInfo:
    info = loss_info(loss)
    if two_tower:
        if info.name not in TWO_TOWER_LOSSES:
            raise ValueError(
                f"paired data (pairs, or a caption set as data) train two towers with a bimodal "
                f"loss ({', '.join(TWO_TOWER_LOSSES)}); got loss {loss!r} of kind "
                f"{info.input_kind!r}"
            )
        return info
    if info.name in TWO_TOWER_LOSSES:
        raise ValueError(
            f"loss {loss!r} is fed {info.input_kind!r} inputs, not image views: it trains two "
            "towers on paired data; give a file of pairs (pairs: "
            "FILE.csv or FILE.npz, --pairs) or a caption set as data (digits-captions, "
            "fashion-mnist-captions)"
        )
    if info.input_kind != "views":
        raise ValueError(
            f"loss {loss!r} is fed {info.input_kind!r} inputs, not image views; image "
            "training needs a loss of kind 'views' (e.g. ntxent, supcon, dcl, dclw; "
            "`contrastkit losses` lists each loss's kind)"
        )
    return info


def _check_loss_use(c: FitConfig, info: LossInfo) -> None:
    _check_loss_kwargs(c.loss, info.factory, c.loss_kwargs)
    if info.momentum_encoder and c.views != 2:
        raise ValueError(
            f"loss {c.loss!r} contrasts the queries of view 0 with the momentum keys of view 1; "
            f"it needs views=2, got {c.views}"
        )
    if c.views < info.min_views and not info.needs_labels and not c.two_tower:
        raise ValueError(f"loss {c.loss!r} needs views >= {info.min_views}, got {c.views}")
    if c.temperature is not None:
        check_positive(c.temperature, "temperature")


def _check_counts(c: FitConfig) -> None:
    for name in ("epochs", "batch_size", "views", "knn_k"):
        if not _is_int(getattr(c, name), 1):
            raise ValueError(f"{name} must be a positive integer, got {getattr(c, name)!r}")
    if c.batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 for contrastive training, got {c.batch_size}")
    if c.data_image_size is not None and not _is_int(c.data_image_size, 1):
        raise ValueError(
            f"data_image_size must be a positive integer or null, got {c.data_image_size!r}"
        )
    if not _is_int(c.checkpoint_every, 0):
        raise ValueError(f"checkpoint_every must be an integer >= 0, got {c.checkpoint_every!r}")
    if c.monitor_every is not None and not _is_int(c.monitor_every, 0):
        raise ValueError(
            "monitor_every must be an integer >= 0 (0: no monitoring) or null (the default: every "
            f"epoch from 1,000 training samples, sparser below), got {c.monitor_every!r}"
        )
    if not _is_int(c.keep_checkpoints, 1):
        raise ValueError(f"keep_checkpoints must be a positive integer, got {c.keep_checkpoints!r}")
    if not (_is_int(c.seed, 0) and c.seed < 2**32):
        raise ValueError(
            f"seed must be an integer in [0, 2**32) (it seeds torch, numpy and the data split), "
            f"got {c.seed!r}"
        )
    if c.threads is not None and not _is_int(c.threads, 1):
        raise ValueError(
            f"threads must be a positive integer or null (all cores), got {c.threads!r}"
        )
    if c.augment is not None:
        check_augment(c.augment)


def _check_optimisation(c: FitConfig) -> None:
    if c.grad_clip is not None:
        check_positive(c.grad_clip, "grad_clip")
    check_positive(c.lr, "lr")
    check_positive(c.weight_decay, "weight_decay", allow_zero=True)
    check_positive(c.knn_temperature, "knn_temperature")
    if c.warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be >= 0, got {c.warmup_epochs}")
    check_choice(c.optimizer, "optimizer", OPTIMIZERS)
    check_choice(c.schedule, "schedule", SCHEDULES)
    check_choice(c.precision, "precision", PRECISIONS)
    check_choice(c.device, "device", DEVICES)


def _check_encoder(c: FitConfig) -> None:
    check_choice(c.encoder, "encoder", tuple(encoder_names()))
    reserved = _SMALLCNN_KEYS if c.encoder == "smallcnn" else ()
    check_encoder_kwargs(c.encoder, c.encoder_kwargs, reserved=reserved)
    c.encoder_widths = tuple(int(w) for w in c.encoder_widths)
    c.encoder_strides = tuple(int(s) for s in c.encoder_strides)
    if len(c.encoder_widths) != len(c.encoder_strides):
        raise ValueError(
            f"encoder_widths and encoder_strides must have the same length; got "
            f"{list(c.encoder_widths)} and {list(c.encoder_strides)}"
        )


def _check_pretext(c: FitConfig) -> None:
    check_choice(c.pretext, "pretext", PRETEXTS)
    check_positive(c.pretext_weight, "pretext_weight", allow_zero=True)
    if not _is_int(c.pretext_start_epoch, 0):
        raise ValueError(
            f"pretext_start_epoch must be an integer >= 0, got {c.pretext_start_epoch!r}"
        )
    if c.pretext == "none":
        if c.pretext_kwargs:
            raise ValueError(f"pretext_kwargs {dict(c.pretext_kwargs)} given but pretext is 'none'")
        return
    check_keyword_arguments(
        c.pretext_kwargs,
        RotationPretext if c.pretext == "rotation" else JigsawPretext,
        key="pretext_kwargs",
        owner=f"pretext {c.pretext!r}",
        exclude=_RESERVED_PRETEXT_KWARGS,
        note=" (weight and start epoch are pretext_weight and pretext_start_epoch)",
    )


def _check_strategy(strategy: str, kwargs: Mapping[str, Any], pretext: str) -> None:
    check_choice(strategy, "strategy", STRATEGIES)
    if not isinstance(kwargs, Mapping):
        raise TypeError(f"strategy_kwargs must be a mapping, got {type(kwargs).__name__}")
    if strategy == "standard":
        if kwargs:
            raise ValueError(f"strategy_kwargs {dict(kwargs)} given but strategy is 'standard'")
        return
    if pretext != "none":
        raise ValueError(
            f"strategy {strategy!r} does not support a pretext term; set pretext: none"
        )
    allowed = STRATEGY_KWARGS[strategy]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown strategy_kwargs key(s) {unknown} for strategy {strategy!r}; allowed: "
            f"{', '.join(allowed)}"
        )


def _check_pairs(c: FitConfig) -> None:
    if not _is_int(c.captions_per_image, 1):
        raise ValueError(
            f"captions_per_image must be an integer >= 1, got {c.captions_per_image!r}"
        )
    if c.captions_per_image > 1 and not (c.two_tower and c.pairs is None):
        raise ValueError(
            f"captions_per_image={c.captions_per_image} generates several captions per image of a "
            "caption set (data: digits-captions or fashion-mnist-captions); it does not apply to "
            f"{'pairs from a file' if c.pairs is not None else 'unpaired data'}"
        )
    for name in ("csv_img_key", "csv_caption_key"):
        if not getattr(c, name):
            raise ValueError(f"{name} must be a non-empty column name, got {getattr(c, name)!r}")
    if c.csv_label_key is not None and not c.csv_label_key:
        raise ValueError("csv_label_key must be a non-empty column name or null, got ''")
    if c.csv_separator is not None and len(c.csv_separator) != 1:
        raise ValueError(
            f"csv_separator must be one character (e.g. ',' or '\\t') or null, got "
            f"{c.csv_separator!r}"
        )
    if not isinstance(c.text_kwargs, Mapping):
        raise TypeError(f"text_kwargs must be a mapping, got {type(c.text_kwargs).__name__}")
    if not c.two_tower:
        if c.text_kwargs:
            raise ValueError(
                f"text_kwargs {dict(c.text_kwargs)} given but the data are not paired (set pairs "
                "or a caption set as data)"
            )
        return
    if c.pretext != "none" or c.strategy != "standard":
        raise ValueError(
            "two-tower training takes no pretext term and no batch strategy; set pretext: none "
            "and strategy: standard"
        )
    if c.monitor_every:
        raise ValueError(
            "monitor_every is for image runs; a two-tower run is evaluated at its end "
            "(retrieval, zero-shot, probes): set monitor_every: 0"
        )
    allowed = sorted(
        {*(keyword_parameters(TextTransformer) or ()), *TOKENIZER_KWARGS} - {"tokenizer"}
    )
    unknown = sorted(set(c.text_kwargs) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown text_kwargs key(s) {unknown} for the text tower; allowed: {', '.join(allowed)}"
        )


def _check_loss_kwargs(loss: str, factory: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
    if not isinstance(kwargs, Mapping):
        raise TypeError(f"loss_kwargs must be a mapping, got {type(kwargs).__name__}")
    reserved = sorted(set(kwargs) & set(_RESERVED_LOSS_KWARGS))
    if reserved:
        raise ValueError(
            f"loss_kwargs may not set {reserved}: the trainer computes one term per anchor "
            "(reduction='none') and averages them itself"
        )
    check_keyword_arguments(
        kwargs, factory, key="loss_kwargs", owner=f"loss {loss!r}", exclude=_RESERVED_LOSS_KWARGS
    )


def config_keys() -> list[str]:
    """The keys a configuration (recipe, ``--set``, ``config.json``) may hold, sorted."""
    return sorted(f.name for f in dataclasses.fields(FitConfig))


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "null"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    if origin is dict:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def _coerce_float(value: Any) -> tuple[bool, Any]:
    if isinstance(value, bool):
        return False, value
    if isinstance(value, int | float):
        return math.isfinite(float(value)), float(value)
    if isinstance(value, str):
        # YAML 1.1 reads "1e-3" (no dot) as a string: accept the numeric spelling.
        try:
            number = float(value)
        except ValueError:
            return False, value
        return math.isfinite(number), number
    return False, value


def _coerce_tuple(value: Any, item: Any) -> tuple[bool, Any]:
    if not isinstance(value, list | tuple):
        return False, value
    out = []
    for v in value:
        ok, conv = _coerce(v, item)
        if not ok:
            return False, value
        out.append(conv)
    return True, tuple(out)


def _coerce(value: Any, hint: Any) -> tuple[bool, Any]:
    """``(ok, converted)`` for one value against one (non-union) type hint."""
    if hint is type(None):
        return value is None, None
    if hint is Any:
        return True, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        return _coerce_float(value)
    if hint is str:
        return isinstance(value, str), value
    origin = typing.get_origin(hint)
    if origin is tuple:
        return _coerce_tuple(value, typing.get_args(hint)[0])
    if origin is dict:
        ok = isinstance(value, Mapping) and all(isinstance(k, str) for k in value)
        return ok, dict(value) if ok else value
    raise TypeError(f"unsupported config type {hint!r}")  # pragma: no cover


def check_value_type(key: str, value: Any, *, source: str = "config") -> Any:
    """Check ``value`` against the type of config field ``key`` and return it converted.

    Integers are accepted for float fields, lists for tuple fields.

    Args:
        key: A :class:`FitConfig` field.
        value: Its value, as plain data (YAML, JSON, ``--set``).
        source: Where the value comes from, for the error message.

    Returns:
        The value converted to the field's type (e.g. a list to a tuple).

    Raises:
        ValueError: For an unknown key (the message lists every allowed key) or a wrong type (it
            names the key and the expected type).
    """
    hints = typing.get_type_hints(FitConfig)
    if key not in hints:
        raise ValueError(f"{source}: unknown key {key!r}; allowed keys: {', '.join(config_keys())}")
    hint = hints[key]
    options = (
        typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType)
        else (hint,)
    )
    for option in options:
        ok, converted = _coerce(value, option)
        if ok:
            return converted
    raise ValueError(
        f"{source}: key {key!r} must be {_type_name(hint)}, got {value!r} ({type(value).__name__})"
    )


def config_from_mapping(data: Mapping[str, Any], *, source: str = "config") -> FitConfig:
    """A validated :class:`FitConfig` from plain data (unknown keys and wrong types are errors).

    Args:
        data: Configuration keys and values (a recipe, ``config.json``, command-line values).
        source: Where the data come from; every error message starts with it.

    Returns:
        The configuration.

    Raises:
        ValueError: For a non-mapping, an unknown key, a wrong type or an invalid value.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: expected a mapping of config keys, got {type(data).__name__}")
    values = {str(k): check_value_type(str(k), v, source=source) for k, v in data.items()}
    try:
        return FitConfig(**values)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{source}: {exc}") from exc
