"""Moved to parley.engine.autogen.images (a shim until every importer has switched)."""

from .engine.autogen.images import ImageContext, ImageShelf, load_images

__all__ = ["ImageContext", "ImageShelf", "load_images"]
