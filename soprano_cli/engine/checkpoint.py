"""Find a Soprano checkpoint (local folder or hub id) and load its four files."""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soprano_cli.errors import ModelLoadError, ModelNotFoundError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "ekwek/Soprano-1.1-80M"
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "decoder.pth")
# Files fetched from the hub besides the required ones; missing optional files are fine.
HUB_PATTERNS = [*MODEL_FILES, "tokenizer_config.json", "generation_config.json"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def default_model() -> str:
    """The model used when none is given: $SOPRANO_MODEL, else the published 80M model."""
    return os.environ.get("SOPRANO_MODEL") or DEFAULT_MODEL


def is_hub_id(name: str) -> bool:
    """True for `owner/name` strings that are not an existing local path."""
    return bool(_HUB_ID.match(name)) and not Path(name).expanduser().exists()


def resolve_model(model: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """Return the local folder of `model`: a path as is, a hub id through the hub cache."""
    name = str(model) if model is not None else default_model()
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if not is_hub_id(name):
        raise ModelNotFoundError(f"no model folder at '{name}' (expected a folder with {', '.join(MODEL_FILES)})")
    return _from_hub(name, download=download)


def hub_cache_dir() -> Path:
    """The hub cache, from the environment now (huggingface_hub reads it once, at its import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub understands it."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_endpoint() -> str:
    """The hub's address: HF_ENDPOINT, as huggingface_hub reads it, else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def hub_reachable(repo_id: str = DEFAULT_MODEL, timeout: float = 3.0) -> bool:
    """True when the hub answers HTTP at all (any status) within `timeout`; proxies from the environment apply."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(hub_endpoint() + "/api/models/" + repo_id, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # an answer, even 401 or 404, means the hub is there
    except (OSError, ValueError):  # URLError, timeouts, refused connections, a malformed HF_ENDPOINT
        return False


def _from_hub(repo_id: str, *, download: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(repo_id, allow_patterns=HUB_PATTERNS, cache_dir=hub_cache_dir(),
                                   local_files_only=not download or hub_offline())
    except LocalEntryNotFoundError:
        raise ModelNotFoundError(
            f"model '{repo_id}' is not in the local cache and cannot be downloaded (offline?); "
            f"run `soprano models download {repo_id}` when online, or pass --model PATH to a local folder"
        ) from None
    except Exception as error:  # the hub client raises many network and HTTP error types
        raise ModelNotFoundError(
            f"could not download model '{repo_id}': {_first_line(error)}; pass --model PATH to use a local folder"
        ) from None
    path = Path(folder)
    missing = [name for name in MODEL_FILES if not (path / name).exists()]
    if missing:
        raise ModelLoadError(f"model '{repo_id}' in the cache lacks {', '.join(missing)}: {path}")
    return path


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


@dataclass(frozen=True)
class LMConfig:
    """Sizes of the Qwen3 language model, read from config.json."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    eos_token_id: int

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "LMConfig":
        """Accept the transformers 4.x (`rope_theta`) and 5.x (`rope_parameters`) forms."""
        rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
        rope_theta = raw.get("rope_theta", rope.get("rope_theta", 10000.0))
        eos = raw.get("eos_token_id")
        if isinstance(eos, list):
            eos = eos[0]
        heads = int(raw["num_attention_heads"])
        return cls(
            vocab_size=int(raw["vocab_size"]),
            hidden_size=int(raw["hidden_size"]),
            num_layers=int(raw["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(raw.get("num_key_value_heads", heads)),
            head_dim=int(raw.get("head_dim") or raw["hidden_size"] // heads),
            intermediate_size=int(raw["intermediate_size"]),
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
            rope_theta=float(rope_theta),
            max_position_embeddings=int(raw.get("max_position_embeddings", 32768)),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            eos_token_id=int(eos if eos is not None else 5),
        )


def _require(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise ModelLoadError(f"checkpoint file missing: {path}")
    return path


def read_lm_config(folder: Path) -> LMConfig:
    """Parse config.json, naming the file in every failure."""
    path = _require(folder, "config.json")
    try:
        return LMConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"invalid {path}: {_first_line(error)}") from None


def load_tokenizer(folder: Path):
    """The `tokenizers` tokenizer from tokenizer.json."""
    from tokenizers import Tokenizer

    path = _require(folder, "tokenizer.json")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises a bare Exception on bad JSON
        raise ModelLoadError(f"invalid {path}: {_first_line(error)}") from None


class LMWeights:
    """model.safetensors, read one tensor at a time with plain reads.

    Not memory-mapped: a mapped file stays resident as long as any tensor views it, which would
    keep a second copy of the model in memory; reading each tensor into its own buffer does not.
    """

    _DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}

    def __init__(self, path: Path):
        import struct

        self.path = path
        try:
            with open(path, "rb") as file:
                (size,) = struct.unpack("<Q", file.read(8))
                if size > 100_000_000:
                    raise ValueError(f"header of {size} bytes")
                header = json.loads(file.read(size))
            header.pop("__metadata__", None)
            self._entries = {key: (entry["dtype"], entry["shape"], entry["data_offsets"]) for key, entry in header.items()}
        except (OSError, ValueError, KeyError, TypeError, struct.error) as error:
            raise ModelLoadError(f"invalid {path}: not a safetensors file ({_first_line(error)})") from None
        self._data_start = 8 + size

    def keys(self) -> set[str]:
        return set(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __getitem__(self, key: str):
        import torch

        if key not in self._entries:
            raise ModelLoadError(f"{self.path} has no tensor '{key}' (does it match config.json?)")
        dtype_name, shape, (begin, end) = self._entries[key]
        if dtype_name not in self._DTYPES:
            raise ModelLoadError(f"{self.path}: tensor '{key}' has unsupported dtype {dtype_name}")
        tensor = torch.empty(shape, dtype=getattr(torch, self._DTYPES[dtype_name]))
        buffer = tensor.view(-1).view(torch.uint8).numpy() if tensor.numel() else None
        if buffer is None or buffer.nbytes != end - begin:
            if tensor.numel() == 0 and begin == end:
                return tensor
            raise ModelLoadError(f"invalid {self.path}: tensor '{key}' size does not match its shape")
        with open(self.path, "rb") as file:
            file.seek(self._data_start + begin)
            if file.readinto(memoryview(buffer)) != buffer.nbytes:
                raise ModelLoadError(f"invalid {self.path}: truncated (tensor '{key}' is cut short)")
        return tensor


def load_lm_weights(folder: Path) -> LMWeights:
    """The LM's tensors in model.safetensors (float32 or bfloat16, as stored), read lazily."""
    return LMWeights(_require(folder, "model.safetensors"))


def load_decoder_weights(folder: Path) -> dict:
    """The decoder's state dict from decoder.pth, never unpickling arbitrary objects."""
    import torch

    path = _require(folder, "decoder.pth")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch.load raises pickle, zip and runtime errors alike
        raise ModelLoadError(f"invalid {path}: {_first_line(error)}") from None
    if not isinstance(state, dict):
        raise ModelLoadError(f"invalid {path}: expected a state dict, got {type(state).__name__}")
    return state
