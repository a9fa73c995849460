"""The course's dataset and model addresses (fastai v1's `URLs`), pointing at the real public archives.

A URL has no extension: the archive is `url + '.tgz'` (`archive_url` knows the few `.zip` ones), and
`untar_data(url)` caches its contents under `<data dir>/<last path component of url>`.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

__all__ = ["URLs", "archive_url", "url_name", "ARCHIVE_SUFFIXES"]

#: Archive endings `untar_data` understands, longest first.
ARCHIVE_SUFFIXES: tuple[str, ...] = (".tar.gz", ".tgz", ".tar", ".zip")


class URLs:
    """Global constants for the course's dataset and pretrained-model URLs (as in fastai v1)."""

    LOCAL_PATH: ClassVar[Path] = Path.cwd()
    URL = "http://files.fast.ai/data/examples/"
    MDL = "http://files.fast.ai/models/"
    S3 = "https://s3.amazonaws.com/fast-ai-"

    S3_IMAGE = f"{S3}imageclas/"
    S3_IMAGELOC = f"{S3}imagelocal/"
    S3_NLP = f"{S3}nlp/"
    S3_COCO = f"{S3}coco/"
    S3_MODEL = f"{S3}modelzoo/"

    # small examples used in the lessons and tests
    ADULT_SAMPLE = f"{URL}adult_sample"
    BIWI_SAMPLE = f"{URL}biwi_sample"
    CIFAR = f"{URL}cifar10"
    COCO_TINY = f"{URL}coco_tiny"
    HUMAN_NUMBERS = f"{URL}human_numbers"
    IMDB_SAMPLE = f"{URL}imdb_sample"
    ML_SAMPLE = f"{URL}movie_lens_sample"
    MNIST_SAMPLE = f"{URL}mnist_sample"
    MNIST_TINY = f"{URL}mnist_tiny"
    PLANET_SAMPLE = f"{URL}planet_sample"
    PLANET_TINY = f"{URL}planet_tiny"
    CAMVID_TINY = f"{URL}camvid_tiny"
    DOGS = f"{URL}dogscats"

    # image classification
    CALTECH_101 = f"{S3_IMAGE}caltech_101"
    CARS = f"{S3_IMAGE}stanford-cars"
    CIFAR_100 = f"{S3_IMAGE}cifar100"
    CUB_200_2011 = f"{S3_IMAGE}CUB_200_2011"
    FLOWERS = f"{S3_IMAGE}oxford-102-flowers"
    FOOD = f"{S3_IMAGE}food-101"
    MNIST = f"{S3_IMAGE}mnist_png"
    MNIST_VAR_SIZE_TINY = f"{S3_IMAGE}mnist_var_size_tiny"
    PETS = f"{S3_IMAGE}oxford-iiit-pet"
    IMAGENETTE = f"{S3_IMAGE}imagenette"
    IMAGENETTE_160 = f"{S3_IMAGE}imagenette-160"
    IMAGENETTE_320 = f"{S3_IMAGE}imagenette-320"
    IMAGEWOOF = f"{S3_IMAGE}imagewoof"
    IMAGEWOOF_160 = f"{S3_IMAGE}imagewoof-160"
    IMAGEWOOF_320 = f"{S3_IMAGE}imagewoof-320"
    LSUN_BEDROOMS = f"{S3_IMAGE}bedroom"

    # localization / segmentation
    BIWI_HEAD_POSE = f"{S3_IMAGELOC}biwi_head_pose"
    CAMVID = f"{S3_IMAGELOC}camvid"
    PASCAL_2007 = f"{S3_IMAGELOC}pascal_2007"
    PASCAL_2012 = f"{S3_IMAGELOC}pascal_2012"
    COCO_SAMPLE = f"{S3_COCO}coco_sample"

    # NLP
    IMDB = f"{S3_NLP}imdb"
    AG_NEWS = f"{S3_NLP}ag_news_csv"
    AMAZON_REVIEWS = f"{S3_NLP}amazon_review_full_csv"
    AMAZON_REVIEWS_POLARITY = f"{S3_NLP}amazon_review_polarity_csv"
    DBPEDIA = f"{S3_NLP}dbpedia_csv"
    MT_ENG_FRA = f"{S3_NLP}giga-fren"
    SOGOU_NEWS = f"{S3_NLP}sogou_news_csv"
    WIKITEXT = f"{S3_NLP}wikitext-103"
    WIKITEXT_TINY = f"{S3_NLP}wikitext-2"
    YAHOO_ANSWERS = f"{S3_NLP}yahoo_answers_csv"
    YELP_REVIEWS = f"{S3_NLP}yelp_review_full_csv"
    YELP_REVIEWS_POLARITY = f"{S3_NLP}yelp_review_polarity_csv"

    # deftly's own bundled samples: no server has them, `untar_data` extracts them from the package
    LOCAL_SAMPLES = "deftly-sample://"
    CHICAGO_RIDERSHIP = f"{LOCAL_SAMPLES}chicago_ridership"  # dated table for lesson 6 (Rossmann-like)

    # collaborative filtering
    ML_100k = "http://files.grouplens.org/datasets/movielens/ml-100k"

    # pretrained models
    OPENAI_TRANSFORMER = f"{S3_MODEL}transformer"
    WT103 = f"{S3_MODEL}wt103"
    WT103_1 = f"{S3_MODEL}wt103-1"
    WT103_FWD = f"{S3_MODEL}wt103-fwd"
    WT103_BWD = f"{S3_MODEL}wt103-bwd"

    #: URLs whose archive is a `.zip` rather than `url + '.tgz'`.
    ZIP_URLS: ClassVar[frozenset[str]] = frozenset({ML_100k})

    #: Known SHA-256 of archives, keyed by URL (without extension). We could not reach the real
    #: servers to record them, so it starts empty; add entries as they are verified.
    checksums: ClassVar[dict[str, str]] = {}


def _strip_suffix(name: str) -> tuple[str, str]:
    for suffix in ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    return name, ""


def archive_url(url: str) -> str:
    """The address of the archive for `url`: itself if it already ends in an archive suffix,
    `url + '.zip'` for the known zip archives, else `url + '.tgz'`."""
    url = str(url).rstrip("/")
    if _strip_suffix(url)[1]:
        return url
    return url + (".zip" if url in URLs.ZIP_URLS else ".tgz")


def url_name(url: str) -> str:
    """The folder name `untar_data` uses for `url`: its last path component, archive suffix removed."""
    last = str(url).rstrip("/").split("?", 1)[0].rsplit("/", 1)[-1]
    return _strip_suffix(last)[0]
