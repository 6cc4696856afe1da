"""Alternative LM backends with the same prefill/decode interface as `engine.lm.Qwen3LM`."""
