"""Downstream tools built on AVTS features and models (e.g. the audio linear probe, `avts-probe`)."""
