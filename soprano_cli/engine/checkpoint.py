"""Find a Soprano checkpoint (local folder or hub id) and load its four files."""

from __future__ import annotations

import json
import logging
import math
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
        """Accept the transformers 4.x (`rope_theta`) and 5.x (`rope_parameters`) forms.

        Every size is checked here, before anything is allocated: a config asking for 10^9
        layers built them one by one on the meta device (memory grew until the OOM killer came).
        Raises ValueError naming the field.
        """
        if not isinstance(raw, dict):
            raise ValueError(f"expected a JSON object, got a JSON {_json_kind(raw)}")
        rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
        rope_theta = raw.get("rope_theta", rope.get("rope_theta", 10000.0) if isinstance(rope, dict) else 10000.0)
        eos = raw.get("eos_token_id")
        if isinstance(eos, list):
            eos = eos[0] if eos else None
        heads = _size(raw, "num_attention_heads")
        hidden = _size(raw, "hidden_size")
        config = cls(
            vocab_size=_size(raw, "vocab_size"),
            hidden_size=hidden,
            num_layers=_size(raw, "num_hidden_layers"),
            num_heads=heads,
            num_kv_heads=_size(raw, "num_key_value_heads", heads),
            head_dim=_size(raw, "head_dim") if raw.get("head_dim") else _derived_head_dim(hidden, heads),
            intermediate_size=_size(raw, "intermediate_size"),
            rms_norm_eps=_positive_float("rms_norm_eps", raw.get("rms_norm_eps", 1e-6)),
            rope_theta=_positive_float("rope_theta", rope_theta),
            max_position_embeddings=_size(raw, "max_position_embeddings", 32768),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            eos_token_id=_whole("eos_token_id", eos if eos is not None else 5, 0, 2**31),
        )
        if config.num_heads % config.num_kv_heads:
            raise ValueError(f"'num_attention_heads' ({config.num_heads}) is not a multiple of "
                             f"'num_key_value_heads' ({config.num_kv_heads})")
        if config.head_dim % 2:
            raise ValueError(f"'head_dim' ({config.head_dim}) must be even (rotary embeddings)")
        if config.eos_token_id >= config.vocab_size:
            raise ValueError(f"'eos_token_id' ({config.eos_token_id}) is outside the vocabulary "
                             f"('vocab_size' {config.vocab_size})")
        return config


# Largest accepted value of each size in config.json: far above any Soprano or Qwen3 checkpoint,
# far below what would exhaust memory while the model is built.
SIZE_LIMITS = {
    "vocab_size": 1 << 20,
    "hidden_size": 1 << 16,
    "num_hidden_layers": 1024,
    "num_attention_heads": 1024,
    "num_key_value_heads": 1024,
    "head_dim": 4096,
    "intermediate_size": 1 << 18,
    "max_position_embeddings": 1 << 24,
}


def _json_kind(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, int) or abs(value) < 10**30 else f"a {len(str(abs(value)))}-digit number"
    return text if len(text) <= 40 else text[:37] + "..."


def _whole(key: str, value: Any, smallest: int, largest: int) -> int:
    """`value` (config.json's `key`) as an int in smallest..largest, else ValueError naming `key`."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"'{key}' must be a whole number, got {_short(value)}")
    if not smallest <= value <= largest:
        raise ValueError(f"'{key}' is {_short(value)}, outside {smallest}..{largest}")
    return value


def _size(raw: dict, key: str, default: Any = None) -> int:
    """A model size from config.json: a whole number from 1 to SIZE_LIMITS[key]."""
    if key not in raw and default is None:
        raise ValueError(f"missing '{key}'")
    return _whole(key, raw.get(key, default), 1, SIZE_LIMITS[key])


def _derived_head_dim(hidden: int, heads: int) -> int:
    if hidden % heads:
        raise ValueError(f"'hidden_size' ({hidden}) is not a multiple of 'num_attention_heads' ({heads}) "
                         "and there is no 'head_dim'")
    return hidden // heads


def _positive_float(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"'{key}' must be a positive number, got {_short(value)}")
    return float(value)


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
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as error:
        raise ModelLoadError(f"invalid {path}: {_first_line(error)}") from None


def load_tokenizer(folder: Path, config: LMConfig | None = None):
    """The `tokenizers` tokenizer from tokenizer.json; with `config`, checked against the LM's vocabulary."""
    from tokenizers import Tokenizer

    path = _require(folder, "tokenizer.json")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises a bare Exception on bad JSON
        raise ModelLoadError(f"invalid {path}: {_first_line(error)}") from None
    if config is not None:
        # Every prompt is [STOP][TEXT]...[START]; an id past the embedding table failed only
        # at synthesis, with an IndexError.
        for token in PROMPT_TOKENS:
            if tokenizer.token_to_id(token) is None:
                raise ModelLoadError(f"invalid {path}: no '{token}' token")
        largest = max(tokenizer.get_vocab(with_added_tokens=True).values(), default=0)
        if largest >= config.vocab_size:
            raise ModelLoadError(f"invalid {path}: token id {largest} is outside config.json's "
                                 f"'vocab_size' ({config.vocab_size})")
    return tokenizer


PROMPT_TOKENS = ("[STOP]", "[TEXT]", "[START]")


def prompt_text(sentence: str) -> str:
    """The model's prompt for one sentence (tokenized as is: the caller cleans the text)."""
    return f"[STOP][TEXT]{sentence}[START]"


class LMWeights:
    """model.safetensors, read one tensor at a time with plain reads.

    Not memory-mapped: a mapped file stays resident as long as any tensor views it, which would
    keep a second copy of the model in memory; reading each tensor into its own buffer does not.
    """

    _DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}
    # Bytes per element of every safetensors dtype, to check each entry's extent against its shape.
    _ITEM_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8,
                   "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}

    def __init__(self, path: Path):
        import struct

        self.path = path
        try:
            with open(path, "rb") as file:
                (size,) = struct.unpack("<Q", file.read(8))
                if size > 100_000_000:
                    raise ValueError(f"header of {size} bytes")
                header = json.loads(file.read(size))
                file_size = os.fstat(file.fileno()).st_size
            if not isinstance(header, dict):
                raise ValueError(f"the header is a JSON {_json_kind(header)}")
            header.pop("__metadata__", None)
            self._entries = {key: (entry["dtype"], entry["shape"], entry["data_offsets"]) for key, entry in header.items()}
        except (OSError, ValueError, KeyError, TypeError, struct.error, RecursionError) as error:
            raise ModelLoadError(f"invalid {path}: not a safetensors file ({_first_line(error)})") from None
        self._data_start = 8 + size
        for key, entry in self._entries.items():
            self._check_entry(key, *entry, data_size=file_size - self._data_start)

    def _check_entry(self, key: str, dtype: Any, shape: Any, offsets: Any, *, data_size: int) -> None:
        """Shape and byte range of one header entry are sane and agree, before anything is allocated."""
        if not (isinstance(shape, list) and all(type(d) is int and 0 <= d < 2**40 for d in shape)):
            raise ModelLoadError(f"invalid {self.path}: tensor '{key}' has shape {_short(shape)}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_size):
            raise ModelLoadError(f"invalid {self.path}: tensor '{key}' has data_offsets {_short(offsets)} "
                                 f"outside the file's {data_size} bytes of data")
        item = self._ITEM_BYTES.get(dtype) if isinstance(dtype, str) else None
        if item is not None and math.prod(shape) * item != offsets[1] - offsets[0]:
            raise ModelLoadError(f"invalid {self.path}: tensor '{key}' of shape {shape} ({dtype}) needs "
                                 f"{math.prod(shape) * item} bytes, its data_offsets give {offsets[1] - offsets[0]}")

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._entries[key][1])

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


def load_lm_weights(folder: Path, config: LMConfig | None = None) -> LMWeights:
    """The LM's tensors in model.safetensors (float32 or bfloat16, as stored), read lazily.

    With `config`, every tensor the LM needs is checked, from the header alone, to be there with
    the shape config.json gives, so a mismatch fails before any weight is read or allocated.
    """
    weights = LMWeights(_require(folder, "model.safetensors"))
    if config is not None:
        for key, expected in expected_lm_shapes(config).items():
            if key not in weights:
                if key == "lm_head.weight":
                    continue  # tied to the embeddings
                raise ModelLoadError(f"{weights.path} has no tensor '{key}' (does it match config.json?)")
            if weights.shape(key) != expected:
                raise ModelLoadError(f"{weights.path} does not match config.json: tensor '{key}' has shape "
                                     f"{list(weights.shape(key))}, the config gives {list(expected)}")
    return weights


def expected_lm_shapes(config: LMConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of the Qwen3 LM in model.safetensors, with the shape config.json implies."""
    h, d = config.hidden_size, config.head_dim
    shapes = {"model.embed_tokens.weight": (config.vocab_size, h), "model.norm.weight": (h,),
              "lm_head.weight": (config.vocab_size, h)}
    for i in range(config.num_layers):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (h,),
            p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (config.num_heads * d, h),
            p + "self_attn.k_proj.weight": (config.num_kv_heads * d, h),
            p + "self_attn.v_proj.weight": (config.num_kv_heads * d, h),
            p + "self_attn.o_proj.weight": (h, config.num_heads * d),
            p + "self_attn.q_norm.weight": (d,),
            p + "self_attn.k_norm.weight": (d,),
            p + "mlp.gate_proj.weight": (config.intermediate_size, h),
            p + "mlp.up_proj.weight": (config.intermediate_size, h),
            p + "mlp.down_proj.weight": (h, config.intermediate_size),
        })
    return shapes


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
