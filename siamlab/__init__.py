"""siamlab: a research toolkit for studying collapse in Siamese self-supervised learning."""

__version__ = "0.1.0"
