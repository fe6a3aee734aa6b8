"""The text tower: a BPE tokenizer trained on the captions and CLIP's small causal transformer.

- :class:`TextTokenizer` wraps a Hugging Face ``tokenizers`` BPE model (the ``text`` extra:
  ``pip install 'contrastkit[text]'``) trained on the training captions, with CLIP's text
  normalisation (NFKC, lower case), CLIP's end-of-word suffix ``</w>`` and the special tokens
  ``[PAD]`` (id 0), ``[UNK]``, ``[SOT]`` and ``[EOT]``. It is saved and loaded as the library's own
  JSON file (``tokenizer.json`` in a run directory): no pickle, no hand-written BPE.
- :class:`TextTransformer` is CLIP's text encoder at a small size: token and learned positional
  embeddings, pre-LayerNorm transformer blocks under a causal mask, a final LayerNorm, and the
  output at the end-of-text token as the caption's features.

Captions longer than the context are cut to ``context_length - 1`` tokens plus ``[EOT]``, as CLIP
does; :meth:`TextTransformer.tokenize` says so once per encoder with a :class:`CaptionTruncatedWarning`.

Paper: Radford et al., "Learning Transferable Visual Models From Natural Language Supervision"
(2021), section 2.4: a 63M-parameter 12-layer 512-wide transformer with 8 heads, a lower-cased BPE
vocabulary of 49,152, context 76 tokens, ``[SOS]``/``[EOS]`` brackets, masked self-attention, and
the ``[EOS]`` activations of the last layer (layer-normalised, then linearly projected) as the text
features. The defaults here are sized for a CPU and short generated captions.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit._validation import check_int

__all__ = [
    "CaptionTruncatedWarning",
    "TextTokenizer",
    "TextTransformer",
    "check_texts",
    "trim_padding",
]

PAD, UNK, SOT, EOT = "[PAD]", "[UNK]", "[SOT]", "[EOT]"
SPECIAL_TOKENS = (PAD, UNK, SOT, EOT)
#: Characters every tokenizer knows, so that a class name unseen in training is not ``[UNK]``.
_ALPHABET = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'\"-()/&+")
_SUFFIX = "</w>"


class CaptionTruncatedWarning(UserWarning):
    """Some captions were longer than the text encoder's context and were cut."""


def _tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        raise ImportError(
            "the text tower needs Hugging Face tokenizers: pip install 'contrastkit[text]' "
            "(or pip install tokenizers)"
        ) from exc
    return tokenizers


def check_texts(texts: object, name: str = "texts") -> list[str]:
    """``texts`` as a list of non-empty strings (a single string is refused, not split)."""
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"{name} must be a sequence of str, got {type(texts).__name__}")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(t).__name__}")
        if not t.strip():
            raise ValueError(f"{name}[{i}] is empty; every text needs at least one word")
    return out


def _canonical_bpe(lib: Any, tok: Any) -> Any:
    """The trained BPE model with ids in a fixed order: special tokens, characters, merges.

    The trainer numbers the single characters in an order that varies from run to run (a hash
    set); renumbering them gives fixed ids to the characters. The order of merges of equally
    frequent pairs still follows the library's hash order, so two trainings on the same captions
    can differ there: a run saves its tokenizer, resume reads it back, and under torchrun every
    rank takes rank 0's.
    """
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    merged: list[str] = []
    for a, b in merges:
        if a + b not in merged:
            merged.append(a + b)
    alphabet = sorted(set(model["vocab"]) - set(SPECIAL_TOKENS) - set(merged))
    order = [*SPECIAL_TOKENS, *alphabet, *merged]
    vocab = {token: i for i, token in enumerate(order)}
    return lib.models.BPE(vocab=vocab, merges=merges, unk_token=UNK, end_of_word_suffix=_SUFFIX)


class TextTokenizer:
    """A BPE tokenizer (Hugging Face ``tokenizers``) for captions, saved as one JSON file.

    Build one with :meth:`train` on the training captions, or read one back with
    :meth:`from_file` / :meth:`from_json`. :meth:`encode` gives padded id tensors with ``[SOT]``
    first and ``[EOT]`` after the last kept token; :meth:`decode` inverts it (lower-cased,
    word-separated text).

    Args:
        tokenizer: A ``tokenizers.Tokenizer`` holding the four special tokens, ``[PAD]`` at id 0.

    Example:
        >>> tok = TextTokenizer.train(["a photo of a cat", "a photo of a dog"], vocab_size=100)
        >>> ids, longest = tok.encode(["a photo of a dog"], context_length=8)
        >>> ids.shape, tok.decode(ids)
        (torch.Size([1, 8]), ['a photo of a dog'])
        >>> again = TextTokenizer.from_json(tok.to_json())
        >>> ids = again.encode(["a cat"], context_length=8)[0]
        >>> ids.tolist() == tok.encode(["a cat"], context_length=8)[0].tolist()
        True
    """

    def __init__(self, tokenizer: Any) -> None:
        lib = _tokenizers()
        if not isinstance(tokenizer, lib.Tokenizer):
            raise TypeError(
                f"tokenizer must be a tokenizers.Tokenizer, got {type(tokenizer).__name__}"
            )
        ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise ValueError(f"the tokenizer lacks the special token(s) {missing}")
        if ids[PAD] != 0:
            raise ValueError(f"the tokenizer must have {PAD} at id 0, got id {ids[PAD]}")
        self._tok = tokenizer
        self.pad_id: int = 0
        self.unk_id: int = int(ids[UNK])
        self.sot_id: int = int(ids[SOT])
        self.eot_id: int = int(ids[EOT])

    # ------------------------------------------------------------------ building and saving

    @classmethod
    def train(
        cls, texts: Iterable[str], *, vocab_size: int = 1000, min_frequency: int = 1
    ) -> TextTokenizer:
        """A BPE vocabulary of at most ``vocab_size`` tokens learnt from ``texts``.

        Characters get fixed ids; merges of equally frequent pairs come in the ``tokenizers``
        library's hash order, which can differ between two trainings (save the result to reuse
        it: :meth:`save`, :meth:`from_file`).

        Args:
            texts: The training captions.
            vocab_size: Largest vocabulary, special tokens and single characters included.
            min_frequency: Merges seen fewer times are not learnt.
        """
        lib = _tokenizers()
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of str, got one str")
        corpus = check_texts(list(texts))
        vocab_size = check_int(vocab_size, "vocab_size", minimum=len(SPECIAL_TOKENS) + 1)
        min_frequency = check_int(min_frequency, "min_frequency", minimum=1)
        tok = lib.Tokenizer(lib.models.BPE(unk_token=UNK, end_of_word_suffix=_SUFFIX))
        tok.normalizer = lib.normalizers.Sequence(
            [lib.normalizers.NFKC(), lib.normalizers.Lowercase()]
        )
        tok.pre_tokenizer = lib.pre_tokenizers.Whitespace()
        tok.decoder = lib.decoders.BPEDecoder(suffix=_SUFFIX)
        trainer = lib.trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=_ALPHABET,
            end_of_word_suffix=_SUFFIX,
            show_progress=False,
        )
        tok.train_from_iterator(corpus, trainer=trainer, length=len(corpus))
        tok.model = _canonical_bpe(lib, tok)
        sot, eot = tok.token_to_id(SOT), tok.token_to_id(EOT)
        tok.post_processor = lib.processors.TemplateProcessing(
            single=f"{SOT} $A {EOT}", special_tokens=[(SOT, sot), (EOT, eot)]
        )
        return cls(tok)

    @classmethod
    def from_json(cls, text: str) -> TextTokenizer:
        """The tokenizer saved by :meth:`to_json`."""
        lib = _tokenizers()
        try:
            tok = lib.Tokenizer.from_str(text)
        except Exception as exc:  # tokenizers raises its own exception types
            raise ValueError(f"not a tokenizer JSON document ({exc})") from exc
        return cls(tok)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TextTokenizer:
        """The tokenizer saved by :meth:`save`."""
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"no tokenizer file at {file}")
        try:
            return cls.from_json(file.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"{file}: {exc}") from exc

    def to_json(self) -> str:
        """The whole tokenizer (vocabulary, merges, normaliser, ...) as a JSON document."""
        text: str = self._tok.to_str()
        return text

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_json` to ``path`` (atomically: a temporary file renamed into place)."""
        file = Path(path)
        tmp = file.with_name(file.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, file)

    # ------------------------------------------------------------------------------- using it

    @property
    def vocab_size(self) -> int:
        """Number of token ids (special tokens included)."""
        return int(self._tok.get_vocab_size())

    def token_ids(self, words: Iterable[str]) -> list[int]:
        """The ids of the whole-word tokens of ``words`` that are in the vocabulary (e.g. stopwords)."""
        out = []
        for word in words:
            i = self._tok.token_to_id(word.strip().lower() + _SUFFIX)
            if i is not None:
                out.append(int(i))
        return out

    def encode(self, texts: Sequence[str], *, context_length: int) -> tuple[Tensor, Tensor]:
        """Token ids ``(N, context_length)`` (int64, ``[PAD]`` = 0 after ``[EOT]``) and the
        untruncated length of every text ``(N,)``.

        A text of more than ``context_length`` tokens (``[SOT]`` and ``[EOT]`` included) keeps
        its first ``context_length - 1`` and ends with ``[EOT]``, as CLIP's tokenizer does.
        """
        texts = check_texts(texts)
        length = check_int(context_length, "context_length", minimum=3)
        encodings = self._tok.encode_batch(texts)
        out = torch.zeros(len(texts), length, dtype=torch.int64)
        full = torch.empty(len(texts), dtype=torch.int64)
        for i, enc in enumerate(encodings):
            ids = enc.ids
            full[i] = len(ids)
            if len(ids) > length:
                ids = [*ids[: length - 1], self.eot_id]
            out[i, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        return out, full

    def decode(self, ids: Tensor) -> list[str]:
        """The texts of token-id rows ``(N, L)`` (special tokens and padding dropped)."""
        if not isinstance(ids, Tensor) or ids.dim() != 2:
            raise ValueError(f"ids must be a (N, L) tensor, got {getattr(ids, 'shape', ids)!r}")
        rows = [[int(i) for i in row if int(i) != self.pad_id] for row in ids.tolist()]
        return [str(self._tok.decode(row, skip_special_tokens=True)).strip() for row in rows]

    def __repr__(self) -> str:
        return f"TextTokenizer(vocab_size={self.vocab_size})"


class TextTransformer(nn.Module):
    r"""CLIP's text encoder, small: causal pre-LN transformer, features at the end-of-text token.

    For token ids ``t_1 .. t_L`` (``t_1 = [SOT]``, ``t_e = [EOT]``, padding after it):

    .. math::
        x^{(0)}_j = E[t_j] + P_j, \qquad x^{(l)} = \mathrm{Block}_l(x^{(l-1)})
        \ \text{(attention to positions} \le j\text{ only)}, \qquad
        h = \mathrm{LN}(x^{(N_{layers})})_e

    Each block is ``x + MHA(LN(x))`` then ``x + MLP(LN(x))`` (GELU, hidden ``mlp_ratio * width``).
    The causal mask makes the output at ``[EOT]`` independent of the padding after it, so a batch
    may be cut to its longest caption. The linear projection to the shared space is the two-tower
    model's (:class:`~contrastkit.models.two_tower.TwoTowerModel`). Initialisation as CLIP:
    token embeddings N(0, 0.02^2), positional N(0, 0.01^2).

    Paper: Radford et al., "Learning Transferable Visual Models From Natural Language Supervision"
    (2021): 12 layers, width 512, 8 heads, context 76 (77 in the code). Defaults here: 2 layers,
    width 128, 4 heads, context 32.

    Args:
        tokenizer: The :class:`TextTokenizer` (not a module: it is saved as JSON beside the weights).
        context_length: Largest number of tokens, ``[SOT]`` and ``[EOT]`` included (>= 3).
        width: Model width (``out_dim``), a multiple of ``heads``.
        layers: Number of transformer blocks.
        heads: Attention heads.
        mlp_ratio: MLP hidden size over ``width``.
        dropout: Dropout in the blocks (CLIP: 0).

    Shape:
        tokens ``(B, L)`` int64 with ``L <= context_length`` -> features ``(B, width)``.

    Example:
        >>> tok = TextTokenizer.train(["a photo of a cat", "a photo of a dog"], vocab_size=100)
        >>> encoder = TextTransformer(tok, context_length=8, width=16, layers=1, heads=2)
        >>> encoder(encoder.tokenize(["a cat", "a dog on a photo"])).shape
        torch.Size([2, 16])
    """

    def __init__(
        self,
        tokenizer: TextTokenizer,
        *,
        context_length: int = 32,
        width: int = 128,
        layers: int = 2,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(tokenizer, TextTokenizer):
            raise TypeError(f"tokenizer must be a TextTokenizer, got {type(tokenizer).__name__}")
        self.context_length = check_int(context_length, "context_length", minimum=3)
        self.width = check_int(width, "width", minimum=1)
        self.layers = check_int(layers, "layers", minimum=1)
        self.heads = check_int(heads, "heads", minimum=1)
        if self.width % self.heads:
            raise ValueError(f"width must be a multiple of heads; got width={width}, heads={heads}")
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, int | float) or mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be a number > 0, got {mlp_ratio!r}")
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, int | float)
            or not 0 <= dropout < 1
        ):
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
        self.tokenizer = tokenizer
        self.out_dim = self.width
        self.token_embedding = nn.Embedding(tokenizer.vocab_size, self.width)
        self.positional_embedding = nn.Parameter(torch.empty(self.context_length, self.width))
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                self.width,
                self.heads,
                dim_feedforward=max(1, round(mlp_ratio * self.width)),
                dropout=float(dropout),
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(self.layers)
        )
        self.ln_final = nn.LayerNorm(self.width)
        self._warned = False
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)

    def tokenize(self, texts: Sequence[str]) -> Tensor:
        """Token ids ``(N, context_length)`` of ``texts``; over-long ones are cut, said once.

        The first call that cuts captions warns (:class:`CaptionTruncatedWarning`) with how many
        and the longest length; later calls on this encoder stay silent.
        """
        ids, full = self.tokenizer.encode(texts, context_length=self.context_length)
        cut = int((full > self.context_length).sum())
        if cut and not self._warned:
            self._warned = True
            warnings.warn(
                f"{cut} of {len(full)} caption(s) are longer than the text context of "
                f"{self.context_length} tokens (the longest has {int(full.max())}) and were "
                "truncated; raise text_kwargs.context_length to keep them whole",
                CaptionTruncatedWarning,
                stacklevel=2,
            )
        return ids

    def eot_positions(self, tokens: Tensor) -> Tensor:
        """The position of the first ``[EOT]`` of every row (the last non-padding one without)."""
        is_eot = tokens == self.tokenizer.eot_id
        first = is_eot.int().argmax(dim=1)
        last = ((tokens != self.tokenizer.pad_id).long().sum(dim=1) - 1).clamp(min=0)
        return torch.where(is_eot.any(dim=1), first, last)

    def forward(self, tokens: Tensor) -> Tensor:
        if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.is_floating_point():
            raise ValueError(
                "tokens must be an integer tensor (B, L) (use tokenize(texts)); got "
                f"{getattr(tokens, 'dtype', type(tokens).__name__)} "
                f"{tuple(getattr(tokens, 'shape', ()))}"
            )
        b, length = tokens.shape
        if length > self.context_length:
            raise ValueError(
                f"tokens have {length} positions but the context length is {self.context_length}"
            )
        x = self.token_embedding(tokens) + self.positional_embedding[:length]
        mask = torch.triu(
            torch.full((length, length), float("-inf"), device=x.device, dtype=x.dtype), diagonal=1
        )
        for block in self.blocks:
            x = block(x, src_mask=mask, is_causal=True)
        x = self.ln_final(x)
        return x[torch.arange(b, device=x.device), self.eot_positions(tokens)]

    def encode(self, texts: Sequence[str]) -> Tensor:
        """Features ``(N, width)`` of ``texts`` (tokenized on the encoder's device)."""
        device = self.token_embedding.weight.device
        return self(self.tokenize(texts).to(device))

    def extra_repr(self) -> str:
        return (
            f"vocab_size={self.tokenizer.vocab_size}, context_length={self.context_length}, "
            f"width={self.width}, layers={self.layers}, heads={self.heads}"
        )


def trim_padding(tokens: Tensor, pad_id: int = 0) -> Tensor:
    """``tokens (B, L)`` without the trailing columns that are padding in every row."""
    used = (tokens != pad_id).any(dim=0)
    n = int(used.nonzero().max()) + 1 if bool(used.any()) else 1
    return tokens[:, : max(n, 1)]
