"""What is fixed about the Soprano model and how it is sampled by default, each number in one place.

The engine, the server, the daemon's client, the audio code and the CLI all import these names;
this module imports nothing, so the light commands (and the client) can read it without torch.
"""

from __future__ import annotations

# The decoder's output: mono audio at this rate (the contract every front end relies on).
SAMPLE_RATE = 32000
# Audio samples per LM frame at the published sizes: 4 decoder steps of a 512-sample hop.
SAMPLES_PER_FRAME = 2048
FRAME_MS = SAMPLES_PER_FRAME * 1000 // SAMPLE_RATE  # 64
# The model's trained limit per sentence (frames + end); also the cap a request may ask for.
MAX_NEW_TOKENS = 512

# Default sampling, the reference's (engine.sampling.SamplingParams says what each one does).
TEMPERATURE = 0.0
TOP_P = 0.95
REPETITION_PENALTY = 1.2
RETRIES = 0
