"""Reusable layers: RRDB blocks, flow bijections, normalisation, attention, VGG features."""
