"""Whole networks, one file each. Use :func:`gensr.models.registry.build_model` to build by name."""
