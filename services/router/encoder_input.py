"""The word pieces the complexity encoder reads of a request.

``[CLS] last user text [SEP] previous user text [SEP]``: the last user text's first
:data:`HEAD_TOKENS` and last :data:`TAIL_TOKENS` word pieces (a question after a
pasted document sits at its end), then the first :data:`CONTEXT_TOKENS` of the user
message before it, whose difficulty a follow-up such as "now make it thread-safe"
inherits. Token type 0 for the first segment, 1 for the second.

Standard library only: the training script (``bench/router_finetune.py``, in its own
environment) builds its inputs with this same function, so the model reads at run
time exactly what it was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

HEAD_TOKENS = 128
TAIL_TOKENS = 64
CONTEXT_TOKENS = 64
# Word pieces are never shorter than one character, so these windows hold every
# piece read (pathological words aside); a 100 kB paste is not tokenised whole.
HEAD_CHARS = 4000
TAIL_CHARS = 2000
CONTEXT_CHARS = 2000


class _Encoding(Protocol):
    @property
    def ids(self) -> list[int]: ...


class WordPieceTokenizer(Protocol):
    """What this module needs of a ``tokenizers.Tokenizer``."""

    def encode(
        self,
        sequence: str,
        pair: str | None = ...,
        is_pretokenized: bool = ...,
        add_special_tokens: bool = ...,
    ) -> _Encoding: ...

    def token_to_id(self, token: str) -> int | None: ...


def _pieces(tokenizer: WordPieceTokenizer, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False).ids)


def encoder_input(
    tokenizer: WordPieceTokenizer, text: str, previous: str
) -> tuple[list[int], int]:
    """The input ids and how many of them belong to the first segment."""
    if len(text) > HEAD_CHARS + TAIL_CHARS:
        ids = (
            _pieces(tokenizer, text[:HEAD_CHARS])[:HEAD_TOKENS]
            + _pieces(tokenizer, text[-TAIL_CHARS:])[-TAIL_TOKENS:]
        )
    else:
        ids = _pieces(tokenizer, text)
        if len(ids) > HEAD_TOKENS + TAIL_TOKENS:
            ids = ids[:HEAD_TOKENS] + ids[-TAIL_TOKENS:]
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    if cls is None or sep is None:
        raise ValueError("the tokenizer has no [CLS] or [SEP] token")
    first = [cls, *ids, sep]
    if not previous.strip():
        return first, len(first)
    context = _pieces(tokenizer, previous[:CONTEXT_CHARS])[:CONTEXT_TOKENS]
    return [*first, *context, sep], len(first)


def previous_user_message(messages: Sequence[Mapping[str, object]]) -> str:
    """The text of the user message before the last one ('' when none).

    ``messages`` in chat-message form: ``{"role": ..., "content": ...}``.
    """
    users = [str(m.get("content", "")) for m in messages if m.get("role") == "user"]
    return users[-2] if len(users) >= 2 else ""
