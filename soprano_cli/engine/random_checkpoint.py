"""Random-weight checkpoints in the official layout, any size: fixtures for tests and benchmarks.

`write_random_checkpoint(folder)` with no size arguments writes the published 80M sizes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[STOP]", "[TEXT]", "[START]", "[EOS]"]


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


def _lm_state(sizes: CheckpointSizes, generator, *, tie: bool) -> dict:
    import torch

    def normal(*shape, std=0.02):
        return torch.randn(*shape, generator=generator) * std

    h, d = sizes.hidden_size, sizes.head_dim
    state = {"model.embed_tokens.weight": normal(sizes.vocab_size, h, std=1.0),
             "model.norm.weight": torch.ones(h)}
    for i in range(sizes.num_layers):
        p = f"model.layers.{i}."
        state.update({
            p + "input_layernorm.weight": torch.ones(h),
            p + "post_attention_layernorm.weight": torch.ones(h),
            p + "self_attn.q_proj.weight": normal(sizes.num_heads * d, h),
            p + "self_attn.k_proj.weight": normal(sizes.num_kv_heads * d, h),
            p + "self_attn.v_proj.weight": normal(sizes.num_kv_heads * d, h),
            p + "self_attn.o_proj.weight": normal(h, sizes.num_heads * d),
            p + "self_attn.q_norm.weight": torch.ones(d),
            p + "self_attn.k_norm.weight": torch.ones(d),
            p + "mlp.gate_proj.weight": normal(sizes.intermediate_size, h),
            p + "mlp.up_proj.weight": normal(sizes.intermediate_size, h),
            p + "mlp.down_proj.weight": normal(h, sizes.intermediate_size),
        })
    if not tie:
        state["lm_head.weight"] = normal(sizes.vocab_size, h)
    return state


def _decoder_state(sizes: CheckpointSizes, generator) -> dict:
    import torch

    def normal(*shape, std=0.02):
        return torch.randn(*shape, generator=generator) * std

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
    return state


def write_random_checkpoint(folder: str | Path, sizes: CheckpointSizes | None = None, *, seed: int = 0,
                            dtype: str = "float32", tie: bool = False, transformers_major: int = 5) -> Path:
    """Write config.json, model.safetensors, tokenizer.json and decoder.pth with random weights."""
    import torch
    from safetensors.torch import save_file

    sizes = sizes or CheckpointSizes()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    lm_state = _lm_state(sizes, generator, tie=tie)
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    save_file({k: v.to(torch_dtype).contiguous() for k, v in lm_state.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    torch.save(_decoder_state(sizes, generator), folder / "decoder.pth")
    config = _config(sizes, tie=tie, transformers_major=transformers_major, dtype=dtype)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": 5, "pad_token_id": 0}) + "\n")
    (folder / "tokenizer.json").write_text(_tokenizer_json())
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"backend": "tokenizers", "eos_token": "[EOS]", "pad_token": "[PAD]", "unk_token": "[UNK]",
         "padding_side": "left", "tokenizer_class": "PreTrainedTokenizerFast"}) + "\n")
    (folder / "sizes.json").write_text(json.dumps(asdict(sizes)) + "\n")
    return folder
