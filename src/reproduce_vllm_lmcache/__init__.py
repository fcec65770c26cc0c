"""Reproduce, develop and measure the vLLM + LMCache KV-cache path on CPU."""
