"""Scoring models: latent-space extraction scores and the overfit diagnostic's non-diffusion baseline.

This layer sits above ``tasks`` and ``training``: it runs the public API's models and may train small
reference models, but nothing below imports it.
"""
