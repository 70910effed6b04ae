"""Checkpoints: the gensr safetensors layout and converters from official layouts."""
