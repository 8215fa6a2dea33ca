"""Cairn: data catalogue and feature store."""

__version__ = "0.1.0"
