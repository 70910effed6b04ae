"""Losses: pixel, perceptual (VGG19), adversarial (all GAN losses), likelihood, regularizers."""
