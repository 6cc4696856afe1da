"""The Vocos-style decoder: LM frames -> 32 kHz audio, batched with masks and streamable losslessly.

Frames are upsampled 4x by linear interpolation into "steps"; a ConvNeXt backbone and a linear
head turn steps into STFT bins; an inverse STFT (hop 512, window 2048) turns bins into samples.
T frames give (T-1)*2048 samples. Each depthwise conv sees one step either side, so a step's
value depends on `radius` steps around it; `ready_samples` uses that to say which samples can no
longer change as frames arrive, which is what makes streaming exact.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from soprano_cli.engine.devices import to_host
from soprano_cli.engine.memory import release_free_memory

UPSAMPLE = 4  # steps per frame (contract: interpolate T frames to 4(T-1)+1 steps)
LAYER_NORM_EPS = 1e-6
# Steps a batched call computes at the least (the rest masked): float32 matmul kernels (MKL) round
# a row one way for fewer than 16 rows and another way for more, so a short chunk decoded alone
# must still reach the kernel as 16 rows or more to equal the same chunk inside a padded batch.
MIN_STEPS = 16


def overlap_add(frames: torch.Tensor, hop: int, steps: int) -> torch.Tensor:
    """Frames (B, n_fft, steps or 1, broadcast) summed `hop` samples apart: (B, n_fft + hop (steps - 1)),
    what F.fold does for an inverse STFT. With n_fft a multiple of hop (Soprano's is 4 hops) it
    is a few shifted adds, far cheaper than fold on a CPU (README, Performance: the decoder)."""
    batch, n_fft, _ = frames.shape
    if n_fft % hop:
        fold = dict(output_size=(1, n_fft + hop * (steps - 1)), kernel_size=(1, n_fft), stride=(1, hop))
        return F.fold(frames.expand(batch, n_fft, steps).contiguous(), **fold)[:, 0, 0]
    parts = n_fft // hop
    chunks = frames.reshape(batch, parts, hop, -1)  # sample q * hop + i of a frame is chunks[:, q, i]
    out = frames.new_zeros(batch, hop, steps + parts - 1)  # column c holds samples c * hop ... c * hop + hop - 1
    for part in range(parts):
        out[:, :, part:part + steps] += chunks[:, part]
    return out.transpose(1, 2).reshape(batch, -1)


def depthwise_conv_rows(rows: torch.Tensor, conv: nn.Conv1d, left: int, right: int,
                        rounding: torch.dtype | None = None) -> torch.Tensor:
    """`conv` (depthwise, no padding of its own) over rows (steps, channels) kept in that layout,
    zero-padded by `left` and `right` rows: a multiply-add per tap instead of a transpose, a
    general convolution and a copy back. With `rounding` (bfloat16), inputs and result are
    rounded to it around float32 arithmetic, as an autocast convolution does."""
    weight, bias = conv.weight[:, 0], conv.bias  # (channels, taps), (channels,)
    if rounding is not None:
        rows, weight = rows.to(rounding).float(), weight.to(rounding).float()
        bias = None if bias is None else bias.to(rounding).float()
    taps = weight.shape[-1]
    padded = F.pad(rows, (0, 0, left, right))
    count = padded.shape[0] - taps + 1
    first = padded[:count] * weight[:, 0]
    out = first if bias is None else first.add_(bias)
    for tap in range(1, taps):
        out.addcmul_(padded[tap:tap + count], weight[:, tap])
    return out if rounding is None else out.to(rounding)


def pointwise_rows(conv: nn.Conv1d, rows: torch.Tensor) -> torch.Tensor:
    """A kernel-size-1 `conv` over rows (..., steps, channels) -> (..., steps, out), as a linear
    layer: a convolution's kernel (oneDNN's) may round a step one way in a short input and
    another in a long one (it does with AVX2), while the matmul rounds every row alike from
    MIN_STEPS rows on, so a step's result does not depend on how many were decoded with it."""
    count = rows.shape[-2]
    padded = rows if count >= MIN_STEPS else F.pad(rows, (0, 0, 0, MIN_STEPS - count))
    return F.linear(padded, conv.weight[:, :, 0], conv.bias)[..., :count, :]


def _mlp_added(block: "ConvNeXtBlock", x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """residual + gamma * pwconv2(gelu(pwconv1(x))) for normed rows x (S, dim): where the layers
    have fused forms (int8 on soprano's kernel), two calls for the whole of it."""
    first, second = block.pwconv1, block.pwconv2
    if hasattr(first, "gelu_of") and hasattr(second, "scaled_added") and x.dim() == 2 and x.dtype == torch.float32:
        # Both as shifted rows (AVX2's faster products): GELU's outputs reach only to -0.17 below
        # zero, where they lose nothing to symmetric 8 bits; the normed rows, centred, lose about
        # one bit, which costs the decoder 1-2 dB of its SNR against float32 on the benchmark's
        # checkpoints (the probe measures it on each checkpoint, against MIN_DECODER_SNR_DB).
        return second.scaled_added(first.gelu_of(x, shifted=True), block.gamma, residual, shifted=True)
    return residual + block.gamma * second(F.gelu(first(x)))


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, intermediate: int, kernel: int):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.pwconv1 = nn.Linear(dim, intermediate)
        self.pwconv2 = nn.Linear(intermediate, dim)
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # x: (B, dim, S); mask (B, 1, S) zeroes padding so each sentence sees the conv's zero padding.
        residual = x
        if mask is not None:
            x = x * mask
        x = self.dwconv(x).transpose(1, 2)  # (B, S, dim)
        x = self.pwconv2(F.gelu(self.pwconv1(self.norm(x))))
        return residual + (self.gamma * x).transpose(1, 2)


class ConvNeXtBackbone(nn.Module):
    """`decoder.*` in decoder.pth: upsampled frames (B, C, S) through ConvNeXt blocks to steps (B, S, dim)."""

    def __init__(self, channels: int, dim: int, intermediate: int, layers: int, kernel: int):
        super().__init__()
        self.embed = nn.Conv1d(channels, dim, kernel_size=1)
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.convnext = nn.ModuleList(ConvNeXtBlock(dim, intermediate, kernel) for _ in range(layers))
        self.final_layer_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.norm(pointwise_rows(self.embed, x.transpose(1, 2))).transpose(1, 2)  # (B, dim, S)
        for block in self.convnext:
            x = block(x, mask)
        return self.final_layer_norm(x.transpose(1, 2))  # (B, S, dim)


class _ISTFTWindow(nn.Module):
    def __init__(self, n_fft: int):
        super().__init__()
        # Filled from decoder.pth (or a Hann window); hann_window on the meta device would import
        # torch._dynamo, a second of start-up.
        self.register_buffer("window", torch.empty(n_fft))


class Head(nn.Module):
    def __init__(self, dim: int, n_fft: int):
        super().__init__()
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = _ISTFTWindow(n_fft)


class SopranoDecoder(nn.Module):
    """State-dict compatible with the official decoder.pth; sizes come from its tensors."""

    def __init__(self, channels: int, dim: int, intermediate: int, layers: int, kernel: int, n_fft: int):
        super().__init__()
        self.decoder = ConvNeXtBackbone(channels, dim, intermediate, layers, kernel)
        self.head = Head(dim, n_fft)
        # None: float32 throughout. bfloat16: the convolutions and matmuls under autocast (a GPU's
        # tensor cores); norms and the inverse STFT stay float32.
        self.compute_dtype: torch.dtype | None = None
        self.n_fft = n_fft
        self.hop = n_fft // 4
        self.samples_per_frame = self.hop * UPSAMPLE
        # How many steps either side a backbone output depends on.
        self.radius = layers * (kernel // 2)

    @classmethod
    def from_state_dict(cls, state: dict) -> "SopranoDecoder":
        from soprano_cli.errors import ModelLoadError

        try:
            dim, channels, _ = state["decoder.embed.weight"].shape
            layers = len({key.split(".")[2] for key in state if key.startswith("decoder.convnext.")})
            intermediate = state["decoder.convnext.0.pwconv1.weight"].shape[0]
            kernel = state["decoder.convnext.0.dwconv.weight"].shape[-1]
            n_fft = state["head.out.weight"].shape[0] - 2
        except (KeyError, ValueError, IndexError) as error:
            raise ModelLoadError(f"decoder.pth is not a Soprano decoder (missing {error})") from None
        with torch.device("meta"):
            model = cls(channels, dim, intermediate, layers, kernel, n_fft)
        state = dict(state)
        state.setdefault("head.istft.window", torch.hann_window(n_fft))
        try:
            model.load_state_dict(state, strict=True, assign=True)
        except RuntimeError as error:
            first = str(error).strip().splitlines()
            raise ModelLoadError(f"decoder.pth does not match the decoder layout: {' '.join(first[:2])}") from None
        return model.float().eval()

    # -- shapes -------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.head.istft.window.device

    def reduced_precision(self):
        """The context the network part runs in: autocast to `compute_dtype`, or nothing."""
        if self.compute_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.compute_dtype)

    def num_samples(self, frames: int) -> int:
        """Samples of audio that `frames` frames decode to."""
        return max(frames - 1, 0) * self.samples_per_frame

    def ready_samples(self, frames: int, finished: bool) -> int:
        """Samples that can no longer change once `frames` frames are known."""
        if finished:
            return self.num_samples(frames)
        last_final_step = UPSAMPLE * (frames - 1) - self.radius
        return max(0, self.hop * (last_final_step + 1) - self.n_fft // 2)

    # -- decoding -----------------------------------------------------------------------------

    @torch.inference_mode()
    def forward(self, frames: torch.Tensor, lengths: list[int] | None = None) -> torch.Tensor:
        """frames: (B, T, C) right-padded; lengths: valid frames per row. Returns (B, (T-1)*2048).

        Each row equals decoding that sentence alone (bit for bit where the layers' kernels round a
        row the same for any number of rows from MIN_STEPS on: int8 layers, and float32 ones on
        one thread); samples past its length are zero.
        """
        B, T, _ = frames.shape
        lengths = lengths or [T] * B
        steps = UPSAMPLE * (T - 1) + 1
        x = F.interpolate(frames.transpose(1, 2).float(), size=steps, mode="linear", align_corners=True)
        if steps < MIN_STEPS:  # (B, C, MIN_STEPS): masked padding, as for a longer neighbour
            x = F.pad(x, (0, MIN_STEPS - steps))
        step_lengths = torch.tensor([UPSAMPLE * (n - 1) + 1 for n in lengths], device=frames.device)
        mask = None
        if any(n != T for n in lengths) or steps < MIN_STEPS:
            mask = (torch.arange(x.shape[-1], device=frames.device)[None, :] < step_lengths[:, None]).float()
            x = x * mask[:, None, :]
        with self.reduced_precision():
            hidden = self.decoder(x, None if mask is None else mask[:, None, :])  # (B, S, dim)
            bins = self.head.out(hidden).float().transpose(1, 2)  # (B, n_fft + 2, S)
        audio = self._istft(bins, mask)[:, :self.num_samples(T)]
        if mask is not None:
            for row, n in enumerate(lengths):
                audio[row, self.num_samples(n):] = 0
        return audio

    def _istft(self, bins: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Inverse STFT as torch.istft(center=True), with padded steps left out of the envelope."""
        log_magnitude, phase = bins.chunk(2, dim=1)  # (B, n_fft/2 + 1, S)
        magnitude = torch.exp(log_magnitude).clamp(max=1e2)
        spectrum = torch.polar(magnitude, phase)
        spectrum[:, 0] = 0
        spectrum[:, -1] = 0
        window = self.head.istft.window
        frames = torch.fft.irfft(spectrum, n=self.n_fft, dim=1) * window[None, :, None]  # (B, n_fft, S)
        envelope = window.square()[None, :, None]  # (1, n_fft, 1): the same for every step
        if mask is not None:
            frames = frames * mask[:, None, :]
            envelope = envelope * mask[:, None, :]
        steps = frames.shape[-1]
        length = self.n_fft + self.hop * (steps - 1)
        audio = overlap_add(frames, self.hop, steps)  # (B, length)
        norm = overlap_add(envelope, self.hop, steps)  # (B or 1, length)
        pad = self.n_fft // 2
        audio, norm = audio[:, pad:length - pad], norm[:, pad:length - pad]
        return audio / torch.where(norm > 1e-11, norm, torch.ones_like(norm))

    def first_frame_needed(self, start: int) -> int:
        """The first frame that samples from `start` on depend on."""
        first_step = max(0, -(-(start + self.n_fft // 2 - self.n_fft + 1) // self.hop))  # ceil
        return max(0, (first_step - self.radius) // UPSAMPLE)


class IncrementalDecoder:
    """Decodes one sentence frame by frame, computing every step of every layer exactly once.

    Each block keeps the rows of its input it still needs (one row of left context); a row of its
    output is computed as soon as the row after it is known. The inverse STFT overlap-adds each
    new step into a running buffer and hands out the samples no later step can touch. The result
    equals `SopranoDecoder.forward` on all frames (to float rounding), chunk by chunk.
    """

    def __init__(self, decoder: SopranoDecoder):
        self.decoder = decoder
        backbone = decoder.decoder
        self.blocks = list(backbone.convnext)
        self.pad = decoder.n_fft // 2
        self.frames = 0
        self._last_frame: torch.Tensor | None = None
        # Per block: buffered input rows (S, dim), the global step of the first, outputs produced.
        self._inputs = [None] * len(self.blocks)
        self._first = [0] * len(self.blocks)
        self._produced = [0] * len(self.blocks)
        self._steps = 0  # spectral steps overlap-added so far
        self.device = decoder.device
        self._audio = torch.zeros(0, device=self.device)  # overlap-add buffer from untrimmed sample `_base` on
        self._envelope = torch.zeros(0, device=self.device)
        self._base = 0
        self.emitted = 0  # trimmed samples handed out

    def _steps_from(self, frames: torch.Tensor) -> torch.Tensor:
        """The interpolated steps that new frames (k, C) complete: (4k, C), or 4k-3 for the very first."""
        head = []
        if self._last_frame is None:  # the first frame is step 0 on its own
            head, frames, self._last_frame = [frames[:1]], frames[1:], frames[0]
        if frames.shape[0] == 0:
            return head[0]
        previous = torch.cat([self._last_frame[None], frames[:-1]])  # (k, C)
        weights = torch.arange(1, UPSAMPLE + 1, dtype=frames.dtype, device=frames.device) / UPSAMPLE
        steps = torch.lerp(previous[:, None, :], frames[:, None, :], weights[None, :, None])  # (k, 4, C)
        self._last_frame = frames[-1]
        return torch.cat(head + [steps.reshape(-1, frames.shape[1])])

    @torch.inference_mode()
    def push(self, frames: torch.Tensor | None, finished: bool = False) -> torch.Tensor:
        """Add frames, (C,) or (k, C) (or None), and on `finished` flush the end; returns new final samples."""
        rows = None
        if frames is not None and frames.numel():
            frames = frames.float().reshape(-1, frames.shape[-1])
            steps = self._steps_from(frames)
            self.frames += frames.shape[0]
            backbone = self.decoder.decoder
            with self.decoder.reduced_precision():
                rows = backbone.norm(pointwise_rows(backbone.embed, steps))  # (steps, dim)
        if self.frames == 0:
            return torch.zeros(0, device=self.device)
        with self.decoder.reduced_precision():
            for i, block in enumerate(self.blocks):
                rows = self._advance_block(i, block, rows, finished)
            if rows is not None and rows.shape[0]:
                bins = self.decoder.head.out(self.decoder.decoder.final_layer_norm(rows)).float().T  # (n_fft + 2, k)
        if rows is not None and rows.shape[0]:
            self._overlap_add(bins)
        return self._take(finished)

    def _advance_block(self, i: int, block: ConvNeXtBlock, new_rows, finished: bool):
        if new_rows is not None and new_rows.shape[0]:
            buffered = self._inputs[i]
            self._inputs[i] = new_rows if buffered is None else torch.cat([buffered, new_rows])
        buffered = self._inputs[i]
        if buffered is None:
            return None
        known = self._first[i] + buffered.shape[0]
        start = self._produced[i]
        stop = known if finished else known - 1  # a row needs the one after it, or the true end
        if stop <= start:
            return None
        window = buffered[max(start - 1, 0) - self._first[i]:min(stop + 1, known) - self._first[i]]  # (w, dim)
        left = 1 if start == 0 else 0  # the sentence's start: the conv's zero padding
        right = 1 if stop == known else 0  # the sentence's end
        x = depthwise_conv_rows(window, block.dwconv, left, right, self.decoder.compute_dtype)  # (stop - start, dim)
        out = _mlp_added(block, block.norm(x), buffered[start - self._first[i]:stop - self._first[i]])
        keep = max(stop - 1, 0)  # left context for the next rows
        self._inputs[i] = buffered[keep - self._first[i]:]
        self._first[i] = keep
        self._produced[i] = stop
        return out

    def _overlap_add(self, bins: torch.Tensor) -> None:
        log_magnitude, phase = bins.chunk(2, dim=0)  # (n_fft/2 + 1, k)
        spectrum = torch.polar(torch.exp(log_magnitude).clamp(max=1e2), phase)
        spectrum[0] = 0
        spectrum[-1] = 0
        window = self.decoder.head.istft.window
        n_fft, hop = self.decoder.n_fft, self.decoder.hop
        frames = torch.fft.irfft(spectrum, n=n_fft, dim=0) * window[:, None]  # (n_fft, k)
        k = frames.shape[1]
        length = n_fft + hop * (k - 1)
        segment = overlap_add(frames[None], hop, k)[0]
        envelope = overlap_add(window.square()[None, :, None], hop, k)[0]
        offset = self._steps * hop - self._base  # where step `_steps` starts in the buffer
        needed = offset + length
        if needed > self._audio.shape[0]:
            grow = needed - self._audio.shape[0]
            self._audio = torch.cat([self._audio, self._audio.new_zeros(grow)])
            self._envelope = torch.cat([self._envelope, self._envelope.new_zeros(grow)])
        self._audio[offset:offset + length] += segment
        self._envelope[offset:offset + length] += envelope
        self._steps += k

    def _take(self, finished: bool) -> torch.Tensor:
        """Samples that no later step reaches, in trimmed (centered) coordinates."""
        hop = self.decoder.hop
        if finished:
            final_end = self.decoder.num_samples(self.frames) + self.pad  # untrimmed
        else:
            final_end = self._steps * hop  # step `_steps` (not yet added) starts here
        stop = final_end - self.pad
        if stop <= self.emitted:
            return torch.zeros(0, device=self.device)
        begin = self.emitted + self.pad - self._base
        end = stop + self.pad - self._base
        norm = self._envelope[begin:end]
        samples = self._audio[begin:end] / torch.where(norm > 1e-11, norm, torch.ones_like(norm))
        # Drop what has been handed out; keep the rest of the buffer.
        self._audio = self._audio[end:].clone()
        self._envelope = self._envelope[end:].clone()
        self._base += end
        self.emitted = stop
        return samples


# Frames the decoder takes at once when nobody is waiting for each chunk: large enough to read its
# weights rarely, small enough to bound its activations; 32 rather than 64 buys a lower peak for a
# little decoder time (README, Performance: Memory).
DECODE_BLOCK = 32
TRIM_EVERY_BLOCKS = 4  # hand freed memory back this often: a lower peak for a little decoder time (README)


def decode_frames(decoder: SopranoDecoder, frames: torch.Tensor) -> np.ndarray:
    """One sentence's frames (T, C) to audio, DECODE_BLOCK frames at a time (exactly `decoder(frames)`)."""
    incremental = IncrementalDecoder(decoder)
    pieces = []
    for block, start in enumerate(range(0, max(frames.shape[0], 1), DECODE_BLOCK)):
        pieces.append(incremental.push(frames[start:start + DECODE_BLOCK],
                                       finished=start + DECODE_BLOCK >= frames.shape[0]))
        if block % TRIM_EVERY_BLOCKS == TRIM_EVERY_BLOCKS - 1:
            # Hand the blocks' freed temporaries back: glibc's heaps keep them otherwise, and a
            # long sentence would raise peak memory by tens of MB (README, Performance: Memory).
            release_free_memory()
    audio = torch.cat(pieces)
    release_free_memory()
    # A copy of pinned memory, so the pinned block goes back to the allocator at once.
    return to_host(audio).numpy().astype(np.float32, copy=audio.is_cuda)
