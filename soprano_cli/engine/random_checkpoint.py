"""Random-weight checkpoints in the official layout, any size: fixtures for tests and benchmarks.

`write_random_checkpoint(folder)` with no size arguments writes the published 80M sizes.
`statistics=` gives the weights some of a trained model's statistics (see `STATISTICS`), so
that reduced precision is tested on checkpoints that behave like real ones, not only on the
benign plain-random one.

What trained transformers of this family show, and which option emulates it:

- **Outlier channels** ("outliers"). A few hidden dimensions carry activations one to two orders
  of magnitude above the rest, the same dimensions at every layer and for almost every token
  (LLM.int8(), Dettmers et al. 2022; SmoothQuant, Xiao et al. 2023; "Massive activations",
  Sun et al. 2024, who report them in Qwen and LLaMA models down to the smallest sizes). They
  live in the residual stream and reach each projection's input through the RMSNorm weights;
  the projections read little from them (their weight columns are small), so the information
  is in the quiet channels that a per-token int8 scale set by the outliers rounds away. Emulated:
  `OUTLIER_CHANNELS` dimensions scaled by 20 to 100 in the embeddings and in every RMSNorm weight,
  and the weight columns that read them scaled down by the same factor; the decoder's ConvNeXt
  norms get outlier channels likewise.
- **Non-unit RMSNorm weights** ("norms"). Trained norm weights spread far from their initial 1
  (per layer a different typical size, per channel a log-normal spread), q/k norms included.
- **Heavier-tailed weights** ("heavy"). Trained weight matrices have a kurtosis well above a
  Gaussian's; Student-t with 4 degrees of freedom, scaled to the same standard deviation.
- **"all"**: every one of these at once.

None of this was measured on the published Soprano weights (they cannot be downloaded here);
the sizes follow the papers above.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[STOP]", "[TEXT]", "[START]", "[EOS]"]

# Which trained-model statistics a checkpoint gets: a family that tests and benchmarks run over.
STATISTICS = {
    "random": frozenset(),
    "outliers": frozenset({"outliers"}),
    "norms": frozenset({"norms"}),
    "heavy": frozenset({"heavy"}),
    "all": frozenset({"outliers", "norms", "heavy"}),
}
OUTLIER_CHANNELS = 4  # hidden dimensions with outlier activations
OUTLIER_SCALES = (20.0, 100.0)  # their factor over the rest: log-uniform in this range


@dataclass(frozen=True)
class CheckpointSizes:
    """Sizes of a Soprano checkpoint; defaults are the published Soprano-1.1-80M."""

    hidden_size: int = 512
    num_layers: int = 17
    num_heads: int = 4
    num_kv_heads: int = 1
    head_dim: int = 128
    intermediate_size: int = 2304
    vocab_size: int = 8192
    decoder_dim: int = 768
    decoder_layers: int = 8
    decoder_intermediate: int = 2304
    n_fft: int = 2048

    @classmethod
    def tiny(cls) -> "CheckpointSizes":
        return cls(num_layers=2, intermediate_size=256, vocab_size=1024, decoder_dim=64,
                   decoder_layers=2, decoder_intermediate=192)


def _config(sizes: CheckpointSizes, *, tie: bool, transformers_major: int, dtype: str) -> dict:
    config = {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": None,
        "eos_token_id": 5,
        "pad_token_id": 0,
        "head_dim": sizes.head_dim,
        "hidden_act": "silu",
        "hidden_size": sizes.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": sizes.intermediate_size,
        "max_position_embeddings": 1024,
        "max_window_layers": 28,
        "num_attention_heads": sizes.num_heads,
        "num_hidden_layers": sizes.num_layers,
        "num_key_value_heads": sizes.num_kv_heads,
        "rms_norm_eps": 1e-6,
        "sliding_window": None,
        "tie_word_embeddings": tie,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": sizes.vocab_size,
    }
    if transformers_major >= 5:
        config.update(dtype=dtype, transformers_version="5.0.0",
                      rope_parameters={"rope_theta": 10000.0, "rope_type": "default"},
                      layer_types=["full_attention"] * sizes.num_layers)
    else:
        config.update(torch_dtype=dtype, transformers_version="4.57.0", rope_theta=10000.0, rope_scaling=None)
    return config


def _tokenizer_json() -> str:
    """A byte-level tokenizer with no merges: every byte one id, after the six special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for symbol in sorted(alphabet):
        vocab[symbol] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    return tokenizer.to_str()


class _Statistics:
    """Draws the weights of one checkpoint with the chosen trained-model statistics."""

    def __init__(self, features: frozenset[str], generator):
        import torch

        self.features, self.generator = features, generator
        self.torch = torch

    def normal(self, *shape, std=0.02):
        torch = self.torch
        if "heavy" not in self.features:
            return torch.randn(*shape, generator=self.generator) * std
        # Student-t with 4 degrees of freedom (normal over the root of a chi-square / 4),
        # divided by its standard deviation sqrt(2).
        z = torch.randn(*shape, generator=self.generator)
        chi = sum(torch.randn(*shape, generator=self.generator) ** 2 for _ in range(4)) / 4
        return z / chi.clamp(min=1e-3).sqrt() / 2 ** 0.5 * std

    def norm_weight(self, size: int):
        torch = self.torch
        if "norms" not in self.features:
            return torch.ones(size)
        typical = torch.empty(1).uniform_(-1.2, 1.2, generator=self.generator).exp()  # this norm's level
        return typical * (torch.randn(size, generator=self.generator) * 0.5).exp()

    def outliers(self, size: int):
        """(channels, factors) for a width of `size`, or None without outliers."""
        torch = self.torch
        if "outliers" not in self.features:
            return None
        channels = torch.randperm(size, generator=self.generator)[:OUTLIER_CHANNELS]
        low, high = (torch.tensor(OUTLIER_SCALES).log()).tolist()
        factors = torch.empty(OUTLIER_CHANNELS).uniform_(low, high, generator=self.generator).exp()
        return channels, factors


def _lm_state(sizes: CheckpointSizes, draw: _Statistics, *, tie: bool) -> dict:
    normal = draw.normal
    h, d = sizes.hidden_size, sizes.head_dim
    state = {"model.embed_tokens.weight": normal(sizes.vocab_size, h, std=1.0),
             "model.norm.weight": draw.norm_weight(h)}
    for i in range(sizes.num_layers):
        p = f"model.layers.{i}."
        state.update({
            p + "input_layernorm.weight": draw.norm_weight(h),
            p + "post_attention_layernorm.weight": draw.norm_weight(h),
            p + "self_attn.q_proj.weight": normal(sizes.num_heads * d, h),
            p + "self_attn.k_proj.weight": normal(sizes.num_kv_heads * d, h),
            p + "self_attn.v_proj.weight": normal(sizes.num_kv_heads * d, h),
            p + "self_attn.o_proj.weight": normal(h, sizes.num_heads * d),
            p + "self_attn.q_norm.weight": draw.norm_weight(d),
            p + "self_attn.k_norm.weight": draw.norm_weight(d),
            p + "mlp.gate_proj.weight": normal(sizes.intermediate_size, h),
            p + "mlp.up_proj.weight": normal(sizes.intermediate_size, h),
            p + "mlp.down_proj.weight": normal(h, sizes.intermediate_size),
        })
    if not tie:
        state["lm_head.weight"] = normal(sizes.vocab_size, h)
    outliers = draw.outliers(h)
    if outliers is not None:
        channels, factors = outliers
        # In the residual stream from the embeddings on, and again through every norm's weight.
        state["model.embed_tokens.weight"][:, channels] *= factors
        readers = {"input_layernorm": ("q_proj", "k_proj", "v_proj"),
                   "post_attention_layernorm": ("gate_proj", "up_proj")}
        for key in list(state):
            norm = next((n for n in readers if key.endswith(n + ".weight")), None)
            if norm is None and key != "model.norm.weight":
                continue
            state[key][channels] *= factors
            # The layers that read a norm's output read little from its outlier channels.
            prefix = key[: -len(norm + ".weight")] if norm else ""
            for reader in readers.get(norm, ()):
                for module in ("self_attn.", "mlp."):
                    if prefix + module + reader + ".weight" in state:
                        state[prefix + module + reader + ".weight"][:, channels] /= factors
        if "lm_head.weight" in state:
            state["lm_head.weight"][:, channels] /= factors
    return state


def _decoder_state(sizes: CheckpointSizes, draw: _Statistics) -> dict:
    import torch

    normal = draw.normal

    dim, inter = sizes.decoder_dim, sizes.decoder_intermediate
    state = {
        "decoder.embed.weight": normal(dim, sizes.hidden_size, 1),
        "decoder.embed.bias": torch.zeros(dim),
        "decoder.norm.weight": torch.ones(dim),
        "decoder.norm.bias": torch.zeros(dim),
        "decoder.final_layer_norm.weight": torch.ones(dim),
        "decoder.final_layer_norm.bias": torch.zeros(dim),
        "head.out.weight": normal(sizes.n_fft + 2, dim),
        "head.out.bias": torch.zeros(sizes.n_fft + 2),
        "head.istft.window": torch.hann_window(sizes.n_fft),
    }
    for i in range(sizes.decoder_layers):
        p = f"decoder.convnext.{i}."
        state.update({
            p + "gamma": torch.full((dim,), 0.1),
            p + "dwconv.weight": normal(dim, 1, 3, std=0.3),
            p + "dwconv.bias": torch.zeros(dim),
            p + "norm.weight": torch.ones(dim),
            p + "norm.bias": torch.zeros(dim),
            p + "pwconv1.weight": normal(inter, dim),
            p + "pwconv1.bias": torch.zeros(inter),
            p + "pwconv2.weight": normal(dim, inter),
            p + "pwconv2.bias": torch.zeros(dim),
        })
        outliers = draw.outliers(dim)
        if outliers is not None:  # the norm before pwconv1 and the columns of pwconv1 that read it
            channels, factors = outliers
            state[p + "norm.weight"][channels] *= factors
            state[p + "pwconv1.weight"][:, channels] /= factors
    return state


def write_random_checkpoint(folder: str | Path, sizes: CheckpointSizes | None = None, *, seed: int = 0,
                            dtype: str = "float32", tie: bool = False, transformers_major: int = 5,
                            statistics: str = "random") -> Path:
    """Write config.json, model.safetensors, tokenizer.json and decoder.pth with random weights
    that have the trained-model `statistics` named (a key of `STATISTICS`)."""
    import torch
    from safetensors.torch import save_file

    sizes = sizes or CheckpointSizes()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if statistics not in STATISTICS:
        raise ValueError(f"statistics must be one of {', '.join(STATISTICS)}, not {statistics!r}")
    draw = _Statistics(STATISTICS[statistics], torch.Generator().manual_seed(seed))
    lm_state = _lm_state(sizes, draw, tie=tie)
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    save_file({k: v.to(torch_dtype).contiguous() for k, v in lm_state.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    torch.save(_decoder_state(sizes, draw), folder / "decoder.pth")
    config = _config(sizes, tie=tie, transformers_major=transformers_major, dtype=dtype)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": 5, "pad_token_id": 0}) + "\n")
    (folder / "tokenizer.json").write_text(_tokenizer_json())
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"backend": "tokenizers", "eos_token": "[EOS]", "pad_token": "[PAD]", "unk_token": "[UNK]",
         "padding_side": "left", "tokenizer_class": "PreTrainedTokenizerFast"}) + "\n")
    (folder / "sizes.json").write_text(json.dumps({**asdict(sizes), "statistics": statistics}) + "\n")
    return folder
