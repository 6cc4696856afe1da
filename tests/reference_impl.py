"""The reference implementation (`soprano-tts` from PyPI), run live on a checkpoint the tests make.

Parity tests compare our engine with what this produces: prompt ids, generated ids, the frames the
decoder consumes and the final audio. It drives the reference's own classes (its transformers
backend, its Vocos decoder, its `SopranoTTS.infer`) and only sizes the decoder from the checkpoint,
since the reference hard-codes the published model's decoder sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class ReferenceOutput:
    prompt_ids: list[int]
    gen_ids: list[int]          # generated ids, ending with EOS when the sentence finished
    finish_reason: str          # "stop" or "length"
    hidden: np.ndarray          # (frames, hidden) float32: what the decoder consumed
    audio: np.ndarray           # (samples,) float32 at 32 kHz


def _decoder_sizes(state: dict) -> dict:
    blocks = {key.split(".")[2] for key in state if key.startswith("decoder.convnext.")}
    dim, channels, _ = state["decoder.embed.weight"].shape
    return {"num_input_channels": channels, "decoder_num_layers": len(blocks), "decoder_dim": dim,
            "decoder_intermediate_dim": state["decoder.convnext.0.pwconv1.weight"].shape[0],
            "n_fft": state["head.out.weight"].shape[0] - 2}


class ReferenceSoprano:
    """The reference pipeline on a local checkpoint folder, greedy, CPU, float32."""

    def __init__(self, checkpoint: str | Path):
        import torch
        from soprano.backends.transformers import TransformersModel
        from soprano.tts import SopranoTTS
        from soprano.vocos.decoder import SopranoDecoder

        state = torch.load(Path(checkpoint) / "decoder.pth", map_location="cpu", weights_only=True)
        decoder = SopranoDecoder(**_decoder_sizes(state))
        decoder.load_state_dict(state)
        decoder.eval()
        # SopranoTTS.__init__ would build the full-size decoder and warm up: set its fields instead.
        tts = SopranoTTS.__new__(SopranoTTS)
        tts.pipeline = TransformersModel(device="cpu", model_path=str(checkpoint))
        tts.device, tts.backend, tts.decoder = "cpu", "transformers", decoder
        tts.decoder_batch_size, tts.RECEPTIVE_FIELD, tts.TOKEN_SIZE = 1, 4, 2048
        self.tts = tts
        self._sequences = []
        generate = tts.pipeline.model.generate

        def recording_generate(*args, **kwargs):
            outputs = generate(*args, **kwargs)
            self._sequences.append((kwargs["input_ids"], outputs.sequences))
            return outputs

        tts.pipeline.model.generate = recording_generate

    def run(self, text: str) -> ReferenceOutput:
        """One sentence, already normalized, through the reference's `infer`."""
        import torch

        self._sequences.clear()
        prompt = f"[STOP][TEXT]{text}[START]"
        # Greedy in the reference is sampling at temperature 0.001: seed it so ties cannot vary.
        torch.manual_seed(0)
        with torch.no_grad():
            response = self.tts.pipeline.infer([prompt], temperature=0.0)[0]
            torch.manual_seed(0)
            audio = self.tts.infer(text)
        input_ids, sequences = self._sequences[0]
        prompt_ids = self.tts.pipeline.tokenizer(prompt)["input_ids"]
        gen_ids = sequences[0, input_ids.shape[1]:].tolist()
        eos = self.tts.pipeline.model.config.eos_token_id
        if eos in gen_ids:  # one prompt, no padding: only EOS ends the ids early
            gen_ids = gen_ids[:gen_ids.index(eos) + 1]
        return ReferenceOutput(prompt_ids=list(prompt_ids), gen_ids=gen_ids,
                               finish_reason=response["finish_reason"],
                               hidden=response["hidden_state"].float().numpy().reshape(-1, response["hidden_state"].shape[-1]),
                               audio=audio.float().numpy())
