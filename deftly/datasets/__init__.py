"""Small datasets bundled with deftly, so lessons and tests run without a download."""

from deftly.core.paths import DeftlyPath
from deftly.datasets.download import download_url, extract_archive, file_sha256, untar_data
from deftly.datasets.images import DownloadResult, VerifyResult, download_images, verify_images
from deftly.datasets.mnist import load_mnist, load_mnist_sample, read_idx
from deftly.datasets.urls import URLs

__all__ = ["load_mnist", "load_mnist_sample", "read_idx", "URLs", "untar_data", "download_url",
           "extract_archive", "file_sha256", "DeftlyPath", "download_images", "verify_images", "DownloadResult",
           "VerifyResult"]
