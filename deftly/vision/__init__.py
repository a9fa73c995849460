"""Vision: images, transforms, data and learners (lessons 1, 3, 6, 7). In progress: images so far."""
from deftly.vision.image import (
    Image, get_files, get_image_files, image2np, image_extensions, open_image, pil2tensor,
)

__all__ = ["Image", "get_files", "get_image_files", "image2np", "image_extensions", "open_image", "pil2tensor"]
