"""Inference: tiled, precision-managed upscaling (:mod:`.upscale`, :mod:`.tiling`, :mod:`.precision`) and
network interpolation (:mod:`.interpolation`). Import the submodules directly; this package imports nothing.
"""
