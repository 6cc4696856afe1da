"""The synthesis engine: checkpoint loading, the Qwen3 LM, the Vocos decoder, batching and streaming."""
