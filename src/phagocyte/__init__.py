"""Phagocyte: an AI-native security operations platform."""

__version__ = "0.1.0"
__all__ = ["__version__"]
