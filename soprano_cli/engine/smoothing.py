"""SmoothQuant-style smoothing: int8 that survives a trained model's outlier channels.

A per-token int8 activation scale is set by the row's largest value. Trained transformers carry a
few hidden channels one to two orders of magnitude above the rest at every token, so that scale
rounds the quiet channels (where most of the information is) to a handful of levels. Smoothing
divides each input channel j of a linear layer by s_j and multiplies the weight's column j by
s_j: the product is unchanged, the activations' outliers shrink and the weights (quantized per
output row, and easy to quantize) take them on. Where a norm feeds the layer and nothing else,
1/s folds into the norm's weight, so the int8 step runs exactly as before: no extra operation.

s_j = max|x_j|^alpha / max|W_j|^(1 - alpha) (SmoothQuant, Xiao et al. 2023), from the float32
model's activations over a few calibration prompts, alpha searched per layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from soprano_cli.engine import checkpoint

# How much of the outliers moves into the weights: each layer takes the value of these that
# rounds its calibration product best, or none of them where no smoothing rounds it better.
ALPHAS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
OUTLIER_THRESHOLD = 6.0  # an input channel this many times the median channel is an outlier
# At most this many outlier channels go to float32 in the head (the largest ones): each costs one
# operation per step, and trained models show a handful.
MAX_OUTLIER_CHANNELS = 8
CALIBRATION_TEXTS = (
    "the quick brown fox jumps over the lazy dog, then naps until noon.",
    "she sells sea shells by the sea shore, and the shells she sells are surely seashells.",
    "how much does it cost? about four hundred and twenty dollars, give or take.",
)


def calibration_prompts(tokenizer) -> list[list[int]]:
    """Token ids of the calibration prompts, in the model's prompt format."""
    return [tokenizer.encode(checkpoint.prompt_text(text)).ids for text in CALIBRATION_TEXTS]


@dataclass
class Smoothing:
    """Smoothing factors of one checkpoint: per LM block (qkv's, gate_up's) and per decoder block (pwconv1's)."""

    qkv: list[torch.Tensor]
    gate_up: list[torch.Tensor]
    decoder: list[torch.Tensor]
    head: torch.Tensor  # the LM head's outlier input channels (see OutlierSplitLinear)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        torch.save({"qkv": self.qkv, "gate_up": self.gate_up, "decoder": self.decoder, "head": self.head}, temporary)
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> "Smoothing | None":
        """The factors saved at `path`, or None where there are none (or they cannot be read)."""
        try:
            saved = torch.load(path, weights_only=True)
            return cls(list(saved["qkv"]), list(saved["gate_up"]), list(saved["decoder"]), saved["head"])
        except (OSError, RuntimeError, KeyError, TypeError, ValueError, EOFError):
            return None


def calibrate(lm: nn.Module, decoder: nn.Module, prompts: list[list[int]]) -> Smoothing:
    """Smoothing factors from a float LM's and decoder's activations over `prompts` (both left unchanged)."""
    from soprano_cli.engine.measures import hidden_states

    device = lm.model.embed_tokens.weight.device
    blocks = list(lm.model.layers)
    layers = [b.self_attn.qkv_proj for b in blocks] + [b.mlp.gate_up_proj for b in blocks] + [lm.lm_head]
    frames = []

    def run_lm():
        for ids in prompts:
            frames.append(hidden_states(lm, torch.tensor(ids, device=device)))
            lm.lm_head(frames[-1].to(lm.model.embed_tokens.weight.dtype))  # hidden_states stops before the head

    inputs = layer_inputs(lm, layers, run_lm)
    factors = [best_factors(x, layer.weight) for x, layer in zip(inputs[:-1], layers)]
    convnext = list(decoder.decoder.convnext)
    linears = [block.pwconv1 for block in convnext]

    def run_decoder():
        with torch.inference_mode():
            for hidden in frames:
                decoder(hidden.to(decoder.device).unsqueeze(0))

    decoder_inputs = layer_inputs(decoder, linears, run_decoder)
    decoder_factors = [best_factors(x, layer.weight) for x, layer in zip(decoder_inputs, linears)]
    n = len(blocks)
    return Smoothing(qkv=factors[:n], gate_up=factors[n:], decoder=decoder_factors,
                     head=outlier_channels(inputs[-1].abs().amax(dim=0)))


@torch.inference_mode()
def layer_inputs(model: nn.Module, layers: list[nn.Module], run, keep: int = 128) -> list[torch.Tensor]:
    """Up to `keep` input rows (N, in) of each layer while `run()` drives `model`."""
    found: list[list[torch.Tensor]] = [[] for _ in layers]

    def recorder(index):
        def hook(_module, inputs):
            found[index].append(inputs[0].detach().reshape(-1, inputs[0].shape[-1]).float().cpu())
        return hook

    handles = [layer.register_forward_pre_hook(recorder(i)) for i, layer in enumerate(layers)]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    rows = [torch.cat(parts) if parts else torch.ones(1, layer.in_features) for parts, layer in zip(found, layers)]
    return [x[torch.linspace(0, x.shape[0] - 1, min(keep, x.shape[0])).long()] for x in rows]


def _fake_int8_rows(x: torch.Tensor) -> torch.Tensor:
    """x rounded as the int8 kernels round it: symmetric, one scale per row."""
    scale = x.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
    return (x / scale).round().clamp(-127, 127) * scale


def best_factors(inputs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The factors, over a grid of alpha, whose int8 product (rows and weight rows rounded) is
    closest to the float product on these inputs: SmoothQuant's per-layer alpha search."""
    weight = weight.detach().float().cpu()
    exact = inputs @ weight.t()
    activation_max = inputs.abs().amax(dim=0)
    best, best_error = torch.ones(inputs.shape[1]), float("inf")
    for alpha in (None, *ALPHAS):
        s = best if alpha is None else smoothing_factors(activation_max, weight, alpha)
        error = float((_fake_int8_rows(inputs / s) @ _fake_int8_rows(weight * s).t() - exact).square().sum())
        if error < best_error:
            best, best_error = s, error
    return best


def smoothing_factors(activation_max: torch.Tensor, weight: torch.Tensor, alpha: float) -> torch.Tensor:
    """s (in,) for one layer: activation_max^alpha / weight column max^(1 - alpha)."""
    weight_max = weight.detach().abs().amax(dim=0).float().cpu().clamp(min=1e-5)
    s = activation_max.float().clamp(min=1e-5).pow(alpha) / weight_max.pow(1 - alpha)
    return s.clamp(min=1e-5)


class SmoothedWeights:
    """A checkpoint's LM weights with the smoothing folded in as each tensor is read: what
    `build_lm` takes in place of `checkpoint.LMWeights`, so int8 is still built layer by layer.
    The blocks numbered in `unsmoothed` (those kept in float32) are read as they are."""

    def __init__(self, weights, smoothing: Smoothing, unsmoothed: frozenset[int] = frozenset()):
        self.weights, self.smoothing, self.unsmoothed = weights, smoothing, unsmoothed

    def keys(self):
        return self.weights.keys()

    def __contains__(self, key) -> bool:
        return key in self.weights

    def __getitem__(self, key: str) -> torch.Tensor:
        tensor = self.weights[key]
        parts = key.split(".")
        if len(parts) < 5 or parts[:2] != ["model", "layers"]:
            return tensor
        layer, name = int(parts[2]), ".".join(parts[3:])
        if layer in self.unsmoothed:
            return tensor
        if name == "input_layernorm.weight":
            return (tensor.float() / self.smoothing.qkv[layer]).to(tensor.dtype)
        if name == "post_attention_layernorm.weight":
            return (tensor.float() / self.smoothing.gate_up[layer]).to(tensor.dtype)
        if name in ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"):
            return tensor.float() * self.smoothing.qkv[layer]  # columns
        if name in ("mlp.gate_proj.weight", "mlp.up_proj.weight"):
            return tensor.float() * self.smoothing.gate_up[layer]
        return tensor


class OutlierSplitLinear(nn.Module):
    """`x W^T` with a few outlier input channels in float32 and the rest in int8 (LLM.int8()'s split).

    For the LM head: it reads the final norm's output, which is also the decoder's frame, so no
    norm can take a smoothing factor; and its top logits nearly tie on a random model, so what
    rounding is left after smoothing still flips greedy tokens. With the outlier channels taken
    out, each row's int8 scale is set by the quiet channels. Two operations more than int8, and one per outlier channel.
    """

    def __init__(self, weight: torch.Tensor, channels: torch.Tensor, device: torch.device):
        super().__init__()
        from soprano_cli.engine.quantize import int8_linear

        weight = weight.detach().float()
        self.out_features, self.in_features = weight.shape
        quiet = torch.ones(self.in_features)
        quiet[channels] = 0
        self.register_buffer("quiet", quiet.to(device))
        self.register_buffer("channels", channels.to(device))
        self.register_buffer("outlier_weight", weight[:, channels].t().contiguous().to(device))  # (k, out)
        self.layer = int8_linear(weight * quiet, device)

    @property
    def weight(self) -> torch.Tensor:
        """The int8 part's weight (for inspection)."""
        return self.layer.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer(x * self.quiet.to(x.dtype)).float()
        outliers = x.index_select(-1, self.channels).float()
        # One elementwise multiply-add per channel, not a matmul: a row's result must not depend
        # on how many rows share the call (a BLAS kernel may sum in another order for another
        # batch size), or a sentence's tokens would depend on its batch.
        for j in range(self.outlier_weight.shape[0]):
            out.addcmul_(outliers[..., j:j + 1], self.outlier_weight[j])
        return out.to(x.dtype) if x.dtype != torch.float32 else out


def outlier_channels(activation_max: torch.Tensor, threshold: float = OUTLIER_THRESHOLD) -> torch.Tensor:
    """Input channels whose largest magnitude is `threshold` times the median channel's or more."""
    found = torch.nonzero(activation_max > threshold * activation_max.median()).flatten()
    return found[activation_max[found].argsort(descending=True)[:MAX_OUTLIER_CHANNELS]].sort().values


def smooth_decoder(decoder: nn.Module, smoothing: Smoothing) -> list[tuple[nn.Module, str, nn.Module]]:
    """Fold the decoder's factors into new copies of each ConvNeXt block's norm and pwconv1, in place.

    Returns what was replaced (for `quantize.restore_decoder`): the float decoder is untouched
    underneath, so a rejected int8 decoder goes back to exactly the checkpoint's arithmetic.
    """
    replaced = []
    with torch.inference_mode(False), torch.no_grad():
        for block, s in zip(decoder.decoder.convnext, smoothing.decoder):
            norm, linear = block.norm, block.pwconv1
            s = s.to(linear.weight.device)
            new_norm = nn.LayerNorm(norm.normalized_shape, eps=norm.eps, device=linear.weight.device)
            new_norm.weight.copy_(norm.weight / s)
            new_norm.bias.copy_(norm.bias / s)
            new_linear = nn.Linear(linear.in_features, linear.out_features, device=linear.weight.device)
            new_linear.weight.copy_(linear.weight * s)
            new_linear.bias.copy_(linear.bias)
            replaced += [(block, "norm", norm), (block, "pwconv1", linear)]
            block.norm, block.pwconv1 = new_norm.requires_grad_(False), new_linear.requires_grad_(False)
    return replaced
