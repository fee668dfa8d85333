"""Exceptions the core raises across modules, named for what they mean to the person who reads them."""
from __future__ import annotations


class ModelMismatch(Exception):
    """The configured image model differs from the one the index was built with."""


def check_image_model(stored: str | None, configured: str) -> None:
    """Vectors of two models are not comparable: refuse to mix them, and say how to rebuild."""
    if stored and stored != configured:
        raise ModelMismatch(
            f"The index was built with the image model {stored}, but FINDIMAGE_IMAGE_MODEL is now "
            f"{configured}. Run `findimage index --full` to re-embed the archive with it.")
