"""The checkpoints the tests run on, all in the repository or made here, and their reference outputs.

`TINY_CHECKPOINT` (tests/data/tiny) is trained by tools/train_tiny_checkpoint.py to end its
sentences: greedy decoding stops after a text-dependent number of frames, as the published model
does. `restyled` writes the same weights in the other layouts a real checkpoint may have.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

TINY_CHECKPOINT = Path(__file__).resolve().parent / "data" / "tiny"

# Sentences as the model reads them (already normalized), short to long.
GOLDEN_TEXTS = [
    "soprano is an extremely lightweight text to speech model.",
    "hello world!",
    "the quick brown fox jumps over the lazy dog.",
]

# Frames the tiny checkpoint generates for each of them, greedy (test_parity checks these against the
# reference live); a sentence of F frames is (F - 1) * 2048 samples.
FRAMES = dict(zip(GOLDEN_TEXTS, [174, 40, 136]))
SAMPLES_PER_FRAME = 2048


def samples(text: str) -> int:
    """Samples of audio the tiny checkpoint makes for one (normalized) sentence."""
    return (FRAMES[text] - 1) * SAMPLES_PER_FRAME


def restyled(source: Path, folder: Path, *, dtype: str | None = None, transformers_4x_config: bool = False) -> Path:
    """A copy of `source` (a 5.x config) with its weights stored as `dtype`, its config in 4.x form, or both."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    if dtype is not None:
        weights = load_file(str(folder / "model.safetensors"))
        target = getattr(torch, dtype)
        save_file({k: v.to(target).contiguous() for k, v in weights.items()}, str(folder / "model.safetensors"),
                  metadata={"format": "pt"})
        config["dtype"] = dtype
    if transformers_4x_config:
        config["rope_theta"] = config.pop("rope_parameters")["rope_theta"]
        config["rope_scaling"] = None
        config["torch_dtype"] = config.pop("dtype")
        config.pop("layer_types", None)
        config["transformers_version"] = "4.57.0"
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder
