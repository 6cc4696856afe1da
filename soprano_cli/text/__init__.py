"""English text front end: normalization to spoken words, sentence splitting, chunking; pure, no I/O."""

from __future__ import annotations

from soprano_cli.text.duration import estimate_seconds
from soprano_cli.text.model import ALLOWED_MODEL_CHARS, model_text
from soprano_cli.text.lexicon import Lexicon
from soprano_cli.text.normalize import normalize
from soprano_cli.text.options import TextOptions
from soprano_cli.text.live import incremental_split, split
from soprano_cli.text.split import split_sentences

__all__ = [
    "ALLOWED_MODEL_CHARS",
    "estimate_seconds",
    "incremental_split",
    "Lexicon",
    "TextOptions",
    "model_text",
    "normalize",
    "split",
    "split_sentences",
]
