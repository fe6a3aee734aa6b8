"""Batched, per-sample random augmentation of token-id batches ``(B, L)``: EDA and token dropout.

EDA (Wei & Zou, "EDA: Easy Data Augmentation Techniques for Boosting Performance on Text
Classification Tasks", EMNLP 2019) has four word-level operations, each touching about
``n = max(1, int(alpha * m))`` of the ``m`` words of a sentence (``alpha`` ~ 0.1) [recall]:

- synonym replacement (SR): ``n`` words replaced by a synonym;
- random insertion (RI): a synonym of a random word inserted at a random position, ``n`` times;
- random swap (RS): two random words exchanged, ``n`` times;
- random deletion (RD): each word dropped with probability ``p`` (= ``alpha``).

Here they act on token ids, fully batched (no Python loop over samples; a loop runs over the
``n`` swaps / insertions only). A token is *movable* when it is neither ``pad_id`` nor one of
``protected_ids`` (e.g. BOS / EOS / CLS). Protected tokens are never replaced, dropped or swapped;
deletion and insertion keep them, in order, although they shift with the tokens around them
(a deletion left-packs the row: survivors in their original order, then padding; an insertion
shifts the tail right by one and only happens in rows whose last slot is padding, so no token is
ever pushed out). SR and RI need a thesaurus (WordNet in EDA), which cannot ship here: they work
only with a user-given **synonym table**, a ``(V, S)`` integer tensor whose row ``t`` holds up to
``S`` synonym ids of token ``t``, padded with ``-1``. Without a table SR and RI are off.

What CLIP-rocket does (read in facebookresearch/clip-rocket at commit 5e2dd91, files
``tokenizer.py``, ``main.py``, ``models.py``, ``repro_exps.txt``):

- ``--text-augment`` (``SimpleTokenizer.strong_augment``, applied to each of the ``num_augs``
  augmented captions before BPE): first, with probability ``--remove-stopwords-prob`` (default
  0.8; the YFCC runs use 0.9) remove the NLTK English stopwords, keeping the caption if nothing
  would remain; then pick **one** of ``identity, synonym_replacement, random_swap,
  random_deletion`` with ``random.choices`` weights ``(--no-text-augment-prob 0.0,
  --synonym-replacement-prob 0.4, --random-swap-prob 0.4, --random-deletion-prob 0.2)`` and apply
  ``textaugment.EDA`` (pinned ``textaugment==1.3.4``) with its default arguments. In the
  ``dsfsi/textaugment`` ``eda.py`` read (commit 918f91d; that it equals 1.3.4 is not checked) the
  defaults are ``n=1`` synonym replacement (every occurrence of the chosen word replaced), ``n=1``
  swap and deletion probability ``p=0.1`` (a one-word sentence is kept; if everything is deleted
  one random word is returned). Random insertion is not used. The global caption
  (``weak_augment``) gets the stopword removal only. :class:`TextAugment` follows this with
  ``TextAugmentConfig.clip_rocket()``: stopword removal (with user-given stopword ids), then one
  op per sample with those weights.
- ``--text-dropout-prob`` is **not** a token operation: it is ``nn.Dropout(p, inplace=True)`` on
  the hidden states at the input of every text-transformer block, active only in the ``'local'``
  pass that encodes the augmented captions (``ResidualAttentionBlock.forward``), together with
  ``DropPath`` (stochastic depth, ``--text-drop-path-prob``) on the attention and MLP branches.
  The reproduction commands use 0.2 (CC3M), 0.05 / 0.1 (CC12M) and 0.0 (YFCC, 29M). That belongs
  in the text encoder (an ``nn.Dropout`` on its augmented pass), not in a view function.
  :func:`token_dropout` here is a token-level stand-in (replace by a mask id or drop each movable
  token with probability ``p``), not CLIP-rocket's mechanism.
- ``CL2L.__init__`` also has ``global_text_mask_prob`` / ``local_text_mask_prob`` arguments,
  stored but not used by ``encode_text``.

Differences from the word-level originals: EDA works on whitespace words before BPE, these ops on
token ids (a word split into several BPE pieces counts as several tokens); SR here replaces
positions independently rather than every occurrence of the chosen word.

Randomness comes from ``generator`` (a ``torch.Generator``, which may live on the CPU while the
tokens are on a GPU) or torch's global generator; the same seed on the same device gives the same
result, and every sample draws its own parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from contrastkit._validation import check_choice, check_int, check_probability, check_tensor
from contrastkit.views.image import _rand

__all__ = [
    "CLIP_ROCKET_OP_WEIGHTS",
    "CLIP_ROCKET_REMOVE_STOPWORDS_PROB",
    "DROPOUT_MODES",
    "EDA_OPS",
    "TextAugment",
    "TextAugmentConfig",
    "check_synonym_table",
    "check_tokens",
    "random_deletion",
    "random_insertion",
    "random_swap",
    "remove_stopwords",
    "synonym_replacement",
    "token_dropout",
]

EDA_OPS = ("identity", "synonym", "swap", "deletion", "insertion")
DROPOUT_MODES = ("mask", "drop")
# clip-rocket main.py defaults: --no-text-augment-prob 0.0, --synonym-replacement-prob 0.4,
# --random-swap-prob 0.4, --random-deletion-prob 0.2 (no insertion).
CLIP_ROCKET_OP_WEIGHTS = {"identity": 0.0, "synonym": 0.4, "swap": 0.4, "deletion": 0.2}
CLIP_ROCKET_REMOVE_STOPWORDS_PROB = 0.8  # clip-rocket main.py --remove-stopwords-prob default

_IdSeq = Sequence[int] | Tensor | None


# --------------------------------------------------------------------------------------------------
# validation


def check_tokens(tokens: object, name: str = "tokens") -> Tensor:
    """Validate a batch of token ids: an integer tensor of shape ``(B, L)`` with ``L >= 1``.

    Raises:
        TypeError: If ``tokens`` is not a tensor or not of an integer dtype (bool is refused).
        ValueError: If it is not 2-D or has no positions.
    """
    t = check_tensor(tokens, name)
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise TypeError(f"{name} must hold integer token ids; got dtype {t.dtype}")
    if t.dim() != 2:
        raise ValueError(
            f"{name} must have shape (B, L) (batch, sequence length); got a tensor of rank "
            f"{t.dim()} with shape {tuple(t.shape)}"
            + (" (add a batch dim with tokens.unsqueeze(0))" if t.dim() == 1 else "")
        )
    if t.shape[1] < 1:
        raise ValueError(f"{name} must have at least one position; got shape {tuple(t.shape)}")
    return t


def _check_id(value: object, name: str) -> int:
    """A token id: any int (numpy integers too)."""
    return check_int(value, name)


def _check_ids(ids: _IdSeq, name: str, device: torch.device) -> Tensor:
    """A 1-D int64 tensor of ids on ``device`` (empty for ``None``)."""
    if ids is None:
        return torch.empty(0, dtype=torch.long, device=device)
    if isinstance(ids, Tensor):
        if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
            raise TypeError(f"{name} must hold integer token ids; got dtype {ids.dtype}")
        return ids.reshape(-1).to(device=device, dtype=torch.long)
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence):
        raise TypeError(f"{name} must be a sequence of int token ids; got {type(ids).__name__}")
    values = [_check_id(v, f"{name}[{i}]") for i, v in enumerate(ids)]
    return torch.tensor(values, dtype=torch.long, device=device)


def _check_count(value: object, name: str) -> int:
    return check_int(value, name, minimum=0)


def _check_alpha(value: object, name: str = "alpha") -> float | None:
    if value is None:
        return None
    return check_probability(value, name)  # type: ignore[arg-type]


def check_synonym_table(table: object, name: str = "synonyms") -> Tensor:
    """Validate a synonym table: integer ``(V, S)``, ``S >= 1``, entries ``-1`` (none) or ``>= 0``.

    Row ``t`` lists the synonym ids of token ``t``; ``-1`` marks an empty slot (anywhere in the row).
    Tokens ``>= V`` have no synonyms.
    """
    t = check_tensor(table, name)
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise TypeError(f"{name} must be an integer (LongTensor) table; got dtype {t.dtype}")
    if t.dim() != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(
            f"{name} must have shape (V, S) with V, S >= 1 (token id -> up to S synonym ids, "
            f"-1 padded); got shape {tuple(t.shape)}"
        )
    if t.numel() and bool((t < -1).any()):
        raise ValueError(f"{name} entries must be synonym ids >= 0 or -1 (no synonym)")
    return t


def _movable(tokens: Tensor, pad_id: int, protected: Tensor) -> Tensor:
    """True at tokens that are neither padding nor protected."""
    mov = tokens != pad_id
    if protected.numel():
        mov &= ~torch.isin(tokens.long(), protected)
    return mov


def _prepare(
    tokens: object, pad_id: object, protected_ids: _IdSeq
) -> tuple[Tensor, int, Tensor, Tensor]:
    x = check_tokens(tokens)
    pad = _check_id(pad_id, "pad_id")
    prot = _check_ids(protected_ids, "protected_ids", x.device)
    return x, pad, prot, _movable(x, pad, prot)


# --------------------------------------------------------------------------------------------------
# batched helpers


def _compact(tokens: Tensor, keep: Tensor, pad_id: int) -> Tensor:
    """Left-pack the kept tokens of every row (order kept) and pad the rest."""
    b, length = tokens.shape
    target = torch.where(keep, keep.long().cumsum(1) - 1, length)  # column ``length`` is a bin
    out = tokens.new_full((b, length + 1), pad_id)
    out.scatter_(1, target, tokens)
    return out[:, :length]


def _positions(mask: Tensor) -> Tensor:
    """``(B, L)`` column indices with the True positions of every row first, in order."""
    return torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices


def _uniform_index(count: Tensor, u: Tensor) -> Tensor:
    """``floor(u * count)`` clamped to ``[0, count - 1]`` (0 where ``count == 0``)."""
    k = (u * count.to(u.dtype)).floor().long()
    return torch.minimum(k, (count - 1).clamp(min=0))


def _random_choice(mask: Tensor, u: Tensor) -> Tensor:
    """One uniformly chosen True column per row (any column where a row has none)."""
    count = mask.sum(1)
    k = _uniform_index(count, u)
    return _positions(mask).gather(1, k.unsqueeze(1)).squeeze(1)


def _per_sample_count(n: int, alpha: float | None, words: Tensor) -> Tensor:
    """EDA's ``max(1, int(alpha * m))`` per sample, or ``n`` for all (0 where ``m == 0``)."""
    if alpha is None:
        counts = torch.full_like(words, n)
    else:
        counts = (alpha * words.double()).floor().long().clamp(min=1)
    return torch.where(words > 0, counts, 0)


def _synonym_lookup(tokens: Tensor, table: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """Per position: whether the token has a synonym, and one uniformly drawn synonym id."""
    v, _ = table.shape
    table = table.to(tokens.device)
    in_range = (tokens >= 0) & (tokens < v)
    rows = table[tokens.long().clamp(0, v - 1)]  # (B, L, S)
    valid = (rows >= 0) & in_range.unsqueeze(-1)
    count = valid.sum(-1)
    order = torch.sort((~valid).to(torch.uint8), dim=-1, stable=True).indices
    k = _uniform_index(count, u)
    syn = rows.gather(-1, order.gather(-1, k.unsqueeze(-1))).squeeze(-1)
    return count > 0, syn.to(tokens.dtype)


# --------------------------------------------------------------------------------------------------
# the ops


def random_deletion(
    tokens: Tensor,
    p: float = 0.1,
    *,
    pad_id: int,
    protected_ids: _IdSeq = None,
    keep_one: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """EDA random deletion: drop each movable token with probability ``p``, left-pack the rest.

    Every movable (non-padding, non-protected) token is removed independently with probability
    ``p``; the survivors (protected tokens included) keep their order and shift left, the freed
    positions become ``pad_id``. With ``keep_one``, a row that had movable tokens and would lose
    them all keeps one uniformly chosen movable token (as textaugment's EDA returns a random word).

    Args:
        tokens: Token ids ``(B, L)``, any integer dtype.
        p: Deletion probability in [0, 1] (textaugment default 0.1; EDA ``p = alpha``).
        pad_id: The padding id.
        protected_ids: Ids never deleted (BOS / EOS / CLS ...).
        keep_one: Keep at least one movable token per row that had one.
        generator: Source of randomness.

    Returns:
        Left-packed token ids of the shape, dtype and device of ``tokens``.
    """
    x, pad, _, mov = _prepare(tokens, pad_id, protected_ids)
    p = check_probability(p, "p")
    b, length = x.shape
    dev = x.device
    drop = mov & (_rand((b, length), generator, dev) < p)
    if keep_one:
        u = _rand((b,), generator, dev)
        lost = mov.any(1) & ~(mov & ~drop).any(1)
        rescue = torch.zeros_like(mov)
        rescue.scatter_(1, _random_choice(mov, u).unsqueeze(1), lost.unsqueeze(1))
        drop &= ~rescue
    return _compact(x, (x != pad) & ~drop, pad)


def random_swap(
    tokens: Tensor,
    n: int = 1,
    *,
    alpha: float | None = None,
    pad_id: int,
    protected_ids: _IdSeq = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """EDA random swap: exchange two distinct movable positions, ``n`` times per sample.

    Each swap picks two different movable positions uniformly (rows with fewer than two movable
    tokens are left alone). Padding and protected tokens never move, so the multiset of tokens and
    the positions of padding / protected tokens are kept.

    Args:
        tokens: Token ids ``(B, L)``.
        n: Number of swaps per sample (textaugment default 1); ignored when ``alpha`` is given.
        alpha: EDA's rate: ``max(1, int(alpha * m))`` swaps for a sample with ``m`` movable tokens.
        pad_id: The padding id.
        protected_ids: Ids never moved.
        generator: Source of randomness.

    Returns:
        Token ids of the shape, dtype and device of ``tokens``.
    """
    x, _, _, mov = _prepare(tokens, pad_id, protected_ids)
    n = _check_count(n, "n")
    alpha = _check_alpha(alpha)
    b, length = x.shape
    dev = x.device
    m = mov.sum(1)
    counts = torch.where(m >= 2, _per_sample_count(n, alpha, m), 0)
    n_max = n if alpha is None else int(counts.max()) if b else 0
    order = _positions(mov)
    out = x.clone()
    rows = torch.arange(b, device=dev)
    for k in range(n_max):
        u = _rand((2, b), generator, dev)
        r1 = _uniform_index(m, u[0])
        r2 = _uniform_index((m - 1).clamp(min=0), u[1])
        r2 = r2 + (r2 >= r1).long()
        active = k < counts
        i = order.gather(1, r1.unsqueeze(1)).squeeze(1)
        j = order.gather(1, r2.clamp(max=length - 1).unsqueeze(1)).squeeze(1)
        j = torch.where(active, j, i)
        a, c = out[rows, i], out[rows, j]
        out[rows, i] = c
        out[rows, j] = a
    return out


def synonym_replacement(
    tokens: Tensor,
    synonyms: Tensor,
    n: int = 1,
    *,
    alpha: float | None = None,
    pad_id: int,
    protected_ids: _IdSeq = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """EDA synonym replacement with a user-given synonym table: ``n`` positions per sample.

    Among the movable tokens that have at least one synonym in ``synonyms`` (a ``(V, S)`` table,
    ``-1`` padded), ``min(n, count)`` distinct positions are chosen uniformly per sample and each is
    replaced by a uniformly chosen synonym of its token. Unlike textaugment's EDA, which replaces
    every occurrence of the chosen word, positions are replaced independently.

    Args:
        tokens: Token ids ``(B, L)``.
        synonyms: Synonym table ``(V, S)`` (see :func:`check_synonym_table`).
        n: Replacements per sample (textaugment default 1); ignored when ``alpha`` is given.
        alpha: EDA's rate: ``max(1, int(alpha * m))`` for ``m`` movable tokens.
        pad_id: The padding id.
        protected_ids: Ids never replaced.
        generator: Source of randomness.

    Returns:
        Token ids of the shape, dtype and device of ``tokens``; every changed token is an entry of
        its original token's table row.
    """
    x, _, _, mov = _prepare(tokens, pad_id, protected_ids)
    table = check_synonym_table(synonyms)
    n = _check_count(n, "n")
    alpha = _check_alpha(alpha)
    b, length = x.shape
    dev = x.device
    u = _rand((2, b, length), generator, dev)
    has, syn = _synonym_lookup(x, table, u[1])
    candidate = mov & has
    keys = torch.where(candidate, u[0], 2.0)
    rank = torch.argsort(torch.argsort(keys, dim=1), dim=1)
    counts = _per_sample_count(n, alpha, mov.sum(1))
    chosen = candidate & (rank < counts.unsqueeze(1))
    return torch.where(chosen, syn, x)


def random_insertion(
    tokens: Tensor,
    synonyms: Tensor,
    n: int = 1,
    *,
    alpha: float | None = None,
    pad_id: int,
    protected_ids: _IdSeq = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """EDA random insertion with a user-given synonym table, ``n`` times per sample.

    Each insertion takes a uniformly chosen movable token that has a synonym, draws one of its
    synonyms, and inserts it into one of the ``m + 1`` gaps around the ``m`` movable tokens
    (before any movable token, or right after the last one), shifting the tail right by one.
    A row is only extended while its last slot is padding (no token is ever pushed out), and
    rows without a token that has a synonym are left alone (textaugment gives up as well).

    Args:
        tokens: Token ids ``(B, L)``, right-padded.
        synonyms: Synonym table ``(V, S)``.
        n: Insertions per sample; ignored when ``alpha`` is given.
        alpha: EDA's rate: ``max(1, int(alpha * m))`` for ``m`` movable tokens.
        pad_id: The padding id.
        protected_ids: Ids never moved relative to each other nor used as a source.
        generator: Source of randomness.

    Returns:
        Token ids of the shape, dtype and device of ``tokens``.
    """
    x, pad, prot, mov = _prepare(tokens, pad_id, protected_ids)
    table = check_synonym_table(synonyms)
    n = _check_count(n, "n")
    alpha = _check_alpha(alpha)
    b, length = x.shape
    dev = x.device
    counts = _per_sample_count(n, alpha, mov.sum(1))
    n_max = n if alpha is None else int(counts.max()) if b else 0
    cols = torch.arange(length, device=dev).expand(b, length)
    out = x
    for k in range(n_max):
        u = _rand((4, b, length), generator, dev)
        mov = _movable(out, pad, prot)
        has, syn = _synonym_lookup(out, table, u[0])
        source = mov & has
        m = mov.sum(1)
        src = _random_choice(source, u[1, :, 0])
        new = syn.gather(1, src.unsqueeze(1)).squeeze(1)
        gap = _uniform_index(m + 1, u[2, :, 0])
        order = _positions(mov)
        before = order.gather(1, gap.clamp(max=length - 1).unsqueeze(1)).squeeze(1)
        last = order.gather(1, (m - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
        q = torch.where(gap < m, before, last + 1)
        active = (k < counts) & source.any(1) & (out[:, -1] == pad)
        q = torch.where(active, q, length).unsqueeze(1)
        shifted = out.gather(1, (cols - (cols > q).long()).clamp(min=0))
        out = torch.where(cols == q, new.unsqueeze(1), shifted)
    return out


def remove_stopwords(
    tokens: Tensor,
    stopword_ids: _IdSeq,
    p: float = CLIP_ROCKET_REMOVE_STOPWORDS_PROB,
    *,
    pad_id: int,
    protected_ids: _IdSeq = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """CLIP-rocket's stopword removal: with probability ``p`` per sample, delete the stopwords.

    A selected sample loses every movable token whose id is in ``stopword_ids`` (left-packed as in
    :func:`random_deletion`); a sample that would keep no movable token is left unchanged, as
    clip-rocket keeps the caption when the stripped one is empty. CLIP-rocket uses NLTK's English
    stopword list on words; here the user gives the stopword token ids.

    Args:
        tokens: Token ids ``(B, L)``.
        stopword_ids: The ids to remove.
        p: Probability of stripping a sample (clip-rocket default 0.8).
        pad_id: The padding id.
        protected_ids: Ids never removed (even if listed as stopwords).
        generator: Source of randomness.
    """
    x, pad, _, mov = _prepare(tokens, pad_id, protected_ids)
    stop = _check_ids(stopword_ids, "stopword_ids", x.device)
    p = check_probability(p, "p")
    b = x.shape[0]
    coin = _rand((b,), generator, x.device) < p
    if stop.numel() == 0:
        return x.clone()
    drop = mov & torch.isin(x.long(), stop)
    drop &= (coin & (mov & ~drop).any(1)).unsqueeze(1)
    return _compact(x, (x != pad) & ~drop, pad)


def token_dropout(
    tokens: Tensor,
    p: float,
    *,
    pad_id: int,
    mode: str = "mask",
    mask_id: int | None = None,
    protected_ids: _IdSeq = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Token-level text dropout: each movable token masked (or dropped) with probability ``p``.

    ``mode="mask"`` replaces the token by ``mask_id`` in place; ``mode="drop"`` deletes it and
    left-packs the row (:func:`random_deletion` without the keep-one rule, so a row may lose all
    its movable tokens). Note: CLIP-rocket's ``--text-dropout-prob`` is a different thing, hidden
    state dropout inside the text transformer on the augmented pass (see the module docstring).

    Args:
        tokens: Token ids ``(B, L)``.
        p: Probability in [0, 1].
        pad_id: The padding id.
        mode: ``"mask"`` or ``"drop"``.
        mask_id: The replacement id (required for ``"mask"``).
        protected_ids: Ids never masked or dropped.
        generator: Source of randomness.
    """
    x, pad, _, mov = _prepare(tokens, pad_id, protected_ids)
    p = check_probability(p, "p")
    check_choice(mode, "mode", DROPOUT_MODES)
    if mode == "mask" and mask_id is None:
        raise ValueError('token_dropout(mode="mask") needs mask_id (the id of the mask token)')
    hit = mov & (_rand(tuple(x.shape), generator, x.device) < p)
    if mode == "drop":
        return _compact(x, (x != pad) & ~hit, pad)
    return torch.where(hit, _check_id(mask_id, "mask_id"), x).to(x.dtype)


# --------------------------------------------------------------------------------------------------
# the composed module


@dataclass(frozen=True)
class TextAugmentConfig:
    """Parameters of :class:`TextAugment`; the defaults follow CLIP-rocket's ``--text-augment``.

    Per sample: (1) with ``stopwords_p`` strip the stopwords (needs stopword ids on the module);
    (2) apply **one** op drawn with the relative ``weights`` (CLIP-rocket's ``random.choices``);
    (3) token dropout with ``dropout_p``. ``"synonym"`` and ``"insertion"`` need a synonym table
    on the module; without one their weights are treated as 0 (and the others renormalised).

    Attributes:
        pad_id: The padding id.
        protected_ids: Ids never moved, replaced or removed (BOS / EOS / CLS ...).
        weights: Relative weights of the ops in :data:`EDA_OPS`; missing ops weigh 0.
        deletion_p: Random deletion probability (textaugment default 0.1).
        swap_n: Swaps per sample (textaugment default 1).
        synonym_n: Synonym replacements per sample (textaugment default 1).
        insertion_n: Insertions per sample.
        alpha: If set, EDA's rate replaces the counts and ``deletion_p``: ``max(1, int(alpha * m))``
            swaps / replacements / insertions and deletion probability ``alpha``.
        stopwords_p: Probability of stripping stopwords (clip-rocket: 0.8; off by default here
            since it needs stopword ids).
        dropout_p: Token dropout probability (0 disables).
        dropout_mode: ``"mask"`` (needs ``mask_id``) or ``"drop"``.
        mask_id: The mask token id for ``dropout_mode="mask"``.
        name: A label for ``repr`` (not compared).
    """

    pad_id: int
    protected_ids: tuple[int, ...] = ()
    weights: dict[str, float] = field(default_factory=lambda: dict(CLIP_ROCKET_OP_WEIGHTS))
    deletion_p: float = 0.1
    swap_n: int = 1
    synonym_n: int = 1
    insertion_n: int = 1
    alpha: float | None = None
    stopwords_p: float = 0.0
    dropout_p: float = 0.0
    dropout_mode: str = "mask"
    mask_id: int | None = None
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        """Validate every field."""
        put = object.__setattr__
        _check_id(self.pad_id, "pad_id")
        if isinstance(self.protected_ids, str | bytes) or not isinstance(
            self.protected_ids, Sequence | Tensor
        ):
            raise TypeError(f"protected_ids must be a sequence of ints; got {self.protected_ids!r}")
        put(
            self,
            "protected_ids",
            tuple(_check_id(v, f"protected_ids[{i}]") for i, v in enumerate(self.protected_ids)),
        )
        if not isinstance(self.weights, dict):
            raise TypeError(
                f"weights must be a dict op -> weight; got {type(self.weights).__name__}"
            )
        weights: dict[str, float] = {}
        for op, w in self.weights.items():
            check_choice(op, "weights key", EDA_OPS)
            weights[op] = _weight(w, op)
        put(self, "weights", weights)
        put(self, "deletion_p", check_probability(self.deletion_p, "deletion_p"))
        for f in ("swap_n", "synonym_n", "insertion_n"):
            _check_count(getattr(self, f), f)
        put(self, "alpha", _check_alpha(self.alpha))
        put(self, "stopwords_p", check_probability(self.stopwords_p, "stopwords_p"))
        put(self, "dropout_p", check_probability(self.dropout_p, "dropout_p"))
        check_choice(self.dropout_mode, "dropout_mode", DROPOUT_MODES)
        if self.mask_id is not None:
            _check_id(self.mask_id, "mask_id")
        if self.dropout_p > 0 and self.dropout_mode == "mask" and self.mask_id is None:
            raise ValueError('dropout_mode="mask" with dropout_p > 0 needs mask_id')

    @classmethod
    def clip_rocket(cls, pad_id: int, **overrides: object) -> TextAugmentConfig:
        """CLIP-rocket's strong text augmentation (``main.py`` defaults), plus overrides.

        Stopword removal with probability 0.8, then one of identity / synonym replacement / swap /
        deletion with weights 0 / 0.4 / 0.4 / 0.2 and textaugment's defaults (``n = 1``,
        ``p = 0.1``). No token dropout (CLIP-rocket's text dropout lives in the encoder).
        """
        base: dict[str, object] = dict(
            pad_id=pad_id,
            weights=dict(CLIP_ROCKET_OP_WEIGHTS),
            stopwords_p=CLIP_ROCKET_REMOVE_STOPWORDS_PROB,
            name="clip-rocket",
        )
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]


def _weight(w: object, op: str) -> float:
    if isinstance(w, bool) or not isinstance(w, int | float) or not (math.isfinite(w) and w >= 0):
        raise ValueError(f"weights[{op!r}] must be a finite number >= 0; got {w!r}")
    return float(w)


class TextAugment(nn.Module):
    """Batched EDA-style text views on token ids ``(B, L)``, per-sample random parameters.

    See :class:`TextAugmentConfig` for the steps and the module docstring for CLIP-rocket's
    recipe. The synonym table and stopword ids are buffers (they move with ``.to()`` and are saved
    in the state dict). Each sample draws its own op; all ops whose weight is positive are computed
    for the whole batch and each row keeps the one it drew (no loop over samples).

    Example:
        >>> cfg = TextAugmentConfig(pad_id=0, protected_ids=(1, 2))
        >>> aug = TextAugment(cfg)  # no synonym table: swap / deletion only
        >>> tok = torch.tensor([[1, 5, 6, 7, 8, 2, 0, 0]])
        >>> aug.views(tok, 3, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([1, 3, 8])

    Args:
        config: The parameters.
        synonyms: Optional synonym table ``(V, S)`` (-1 padded); enables synonym replacement and
            random insertion.
        stopword_ids: Optional ids removed with probability ``config.stopwords_p``.
    """

    synonyms: Tensor | None
    stopword_ids: Tensor

    def __init__(
        self,
        config: TextAugmentConfig,
        *,
        synonyms: Tensor | None = None,
        stopword_ids: _IdSeq = None,
    ) -> None:
        super().__init__()
        if not isinstance(config, TextAugmentConfig):
            raise TypeError(f"config must be a TextAugmentConfig; got {type(config).__name__}")
        self.config = config
        table = None if synonyms is None else check_synonym_table(synonyms).detach().long().clone()
        self.register_buffer("synonyms", table)
        self.register_buffer(
            "stopword_ids", _check_ids(stopword_ids, "stopword_ids", torch.device("cpu")).clone()
        )
        if config.stopwords_p > 0 and self.stopword_ids.numel() == 0:
            raise ValueError(
                "config.stopwords_p > 0 needs stopword_ids (the token ids of the stopwords)"
            )
        self.op_weights = self._active_weights()

    def _active_weights(self) -> dict[str, float]:
        w = {op: self.config.weights.get(op, 0.0) for op in EDA_OPS}
        if self.synonyms is None:
            w["synonym"] = w["insertion"] = 0.0
        total = sum(w.values())
        if total == 0:
            return {"identity": 1.0}
        return {op: v / total for op, v in w.items() if v > 0}

    def extra_repr(self) -> str:
        """Show the settings in ``repr``."""
        c = self.config
        table = None if self.synonyms is None else tuple(self.synonyms.shape)
        weights = {k: round(v, 4) for k, v in self.op_weights.items()}
        return (
            f"name={c.name!r}, pad_id={c.pad_id}, protected_ids={c.protected_ids}, "
            f"ops={weights}, synonyms={table}, stopwords={self.stopword_ids.numel()}, "
            f"stopwords_p={c.stopwords_p}, dropout_p={c.dropout_p}"
        )

    def _op(self, op: str, x: Tensor, generator: torch.Generator | None) -> Tensor:
        c = self.config
        kw: dict = dict(pad_id=c.pad_id, protected_ids=c.protected_ids, generator=generator)
        if op == "swap":
            return random_swap(x, c.swap_n, alpha=c.alpha, **kw)
        if op == "deletion":
            p = c.deletion_p if c.alpha is None else c.alpha
            return random_deletion(x, p, **kw)
        assert self.synonyms is not None
        if op == "synonym":
            return synonym_replacement(x, self.synonyms, c.synonym_n, alpha=c.alpha, **kw)
        return random_insertion(x, self.synonyms, c.insertion_n, alpha=c.alpha, **kw)

    def weak(self, tokens: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """CLIP-rocket's weak text view (its global caption): stopword removal only."""
        x = check_tokens(tokens)
        c = self.config
        if c.stopwords_p == 0:
            return x.clone()
        return remove_stopwords(
            x,
            self.stopword_ids,
            c.stopwords_p,
            pad_id=c.pad_id,
            protected_ids=c.protected_ids,
            generator=generator,
        )

    def forward(self, tokens: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One augmented copy of each row of ``tokens`` ``(B, L)`` (same shape, dtype, device)."""
        c = self.config
        x = self.weak(tokens, generator)
        ops = list(self.op_weights)
        if ops != ["identity"]:
            probs = torch.tensor([self.op_weights[o] for o in ops], dtype=torch.float32)
            cum = probs.cumsum(0).to(x.device)
            u = _rand((x.shape[0],), generator, x.device)
            choice = torch.searchsorted(cum, u, right=True).clamp(max=len(ops) - 1)
            out = x
            for i, op in enumerate(ops):
                if op != "identity":
                    y = self._op(op, x, generator)
                    out = torch.where((choice == i).unsqueeze(1), y, out)
            x = out
        if c.dropout_p > 0:
            x = token_dropout(
                x,
                c.dropout_p,
                pad_id=c.pad_id,
                mode=c.dropout_mode,
                mask_id=c.mask_id,
                protected_ids=c.protected_ids,
                generator=generator,
            )
        return x

    def views(
        self, tokens: Tensor, n_views: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """``(B, V, L)`` views: every view of every sample augmented independently, in one pass.

        Args:
            tokens: Token ids ``(B, L)``.
            n_views: Number of views V >= 1.
            generator: Source of randomness.
        """
        x = check_tokens(tokens)
        if isinstance(n_views, bool) or not isinstance(n_views, int) or n_views < 1:
            raise ValueError(f"n_views must be an int >= 1; got {n_views!r}")
        b, length = x.shape
        rep = x.unsqueeze(1).expand(b, n_views, length).reshape(b * n_views, length)
        return self.forward(rep, generator).view(b, n_views, length)
