"""`from deftly.vision import *`: everything lesson 1-3 code uses (the basics, images, transforms,
image data, CNN learners, interpretation), as fastai v1's `fastai.vision` gave it."""
from deftly.basics import *  # noqa: F401,F403  (this module exists to re-export)
from deftly.basics import __all__ as _basics_all
from deftly.vision.data import ImageDataBunch, ImageFileList, ImageItemList, ImageList
from deftly.vision.image import Image, get_image_files, image2np, image_extensions, open_image, pil2tensor, read_pil
from deftly.vision.transform import (
    BatchAugment, ItemResize, Normalize, RandTransform, batch_stats, brightness, cifar_stats, contrast, crop_pad,
    dihedral, dihedral_affine, flip_lr, get_transforms, imagenet_stats, mnist_stats, rand_crop, rand_pad, rand_zoom,
    rotate, symmetric_warp, zoom, zoom_crop,
)
from deftly.core.paths import get_files
from deftly.vision import models
from deftly.vision.learner import ConvLearner, cnn_learner, create_body, create_cnn, create_head
from deftly.vision.models import arch_stats

__all__ = [*_basics_all, "BatchAugment", "ConvLearner", "Image", "ImageDataBunch", "ImageFileList", "ImageItemList", "ImageList",
           "ItemResize", "Normalize", "RandTransform", "arch_stats", "batch_stats", "brightness", "cnn_learner", "create_body", "create_cnn", "create_head", "models", "cifar_stats", "contrast",
           "crop_pad", "dihedral", "dihedral_affine", "flip_lr", "get_files", "get_image_files", "get_transforms",
           "image2np", "image_extensions", "imagenet_stats", "mnist_stats", "open_image", "pil2tensor",
           "rand_crop", "rand_pad", "rand_zoom", "read_pil", "rotate", "symmetric_warp", "zoom", "zoom_crop"]
