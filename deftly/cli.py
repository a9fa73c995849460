"""The `deftly` command: train an image classifier, predict with an exported model, serve it as a
web app, download and verify image datasets, run the lesson 1 demo.

    deftly train data/bears --valid-pct 0.2 --epochs 4 --out bears.pkl
    deftly predict bears.pkl photo1.jpg photo2.jpg        # one JSON line per file
    deftly serve bears.pkl --port 8000                    # a page at http://127.0.0.1:8000/
    deftly download-images urls_black.txt data/bears/black --max-pics 200
    deftly verify-images data/bears/black --delete --max-size 500

Exit status: 0 success, 1 failure (one line on stderr; `--debug` adds the traceback), 2 a usage
error. Progress goes to stderr (downloads) or stdout (training): a live bar on a terminal, plain
lines in a log; `--quiet` (or DEFTLY_PROGRESS=0) silences it. Results go to stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["main", "build_parser"]

PROG = "deftly"


class CommandError(Exception):
    """A failure the command reports as one line on stderr (exit status 1)."""


# ------------------------------------------------------------------------------------------ commands


def _number(text: str, kind: type, low: float, what: str) -> Any:
    """Parse `text` as `kind`, at least `low`; argparse reports an ArgumentTypeError as a usage error."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
    return value


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _number(text, int, 1, "a whole number")


def _natural_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _number(text, int, 0, "a whole number")


def _positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    value = _number(text, float, float("-inf"), "a number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return value


def _fraction(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    value = _number(text, float, 0, "a number")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _image_data(args: argparse.Namespace, stats: Any) -> Any:
    """The ImageDataBunch for `train`: from a folder (train/valid sub-folders, or a random split)
    or from a CSV of file names and labels."""
    from deftly.vision import ImageDataBunch, get_transforms

    source = Path(args.data)
    common = dict(ds_tfms=get_transforms(do_flip=not args.no_flip), size=args.size, bs=args.bs, seed=args.seed)
    if source.is_file():
        if source.suffix.lower() not in (".csv", ".txt", ".tsv"):
            raise CommandError(f"{source} is a file but not a CSV: give a folder of images or a CSV of "
                               "file names and labels")
        return ImageDataBunch.from_csv(source.parent, folder=args.folder, csv_labels=source.name,
                                       valid_pct=args.valid_pct or 0.2, label_delim=args.label_delim,
                                       suffix=args.suffix, delimiter="\t" if source.suffix.lower() == ".tsv" else None,
                                       **common).normalize(stats)
    if not source.is_dir():
        raise CommandError(f"no such folder or CSV file: {source}")
    train = args.train
    if not (source / train).is_dir():
        if train != "train":
            raise CommandError(f"{source} has no {train!r} sub-folder")
        train = "."  # lesson 2's layout: DATA/<label>/<image>, split at random
    if args.valid_pct is None and train != "." and (source / args.valid).is_dir():
        return ImageDataBunch.from_folder(source, train=train, valid=args.valid, **common).normalize(stats)
    return ImageDataBunch.from_folder(source, train=train, valid_pct=args.valid_pct or 0.2,
                                      **common).normalize(stats)


def cmd_train(args: argparse.Namespace) -> int:
    """Fine-tune a CNN on a folder or CSV of images, then export it to one file."""
    if not Path(args.data).exists():  # before the slow imports
        raise CommandError(f"no such folder or CSV file: {args.data}")
    import torch

    from deftly.core.seed import set_seed
    from deftly.vision import accuracy, accuracy_thresh, cnn_learner, models
    from deftly.vision.models import arch_stats

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    if out.is_dir():
        raise CommandError(f"--out {out} is a folder: give a file name such as {out / 'export.pkl'}")
    if out.parent and not out.parent.is_dir():
        raise CommandError(f"--out {out}: the folder {out.parent} does not exist")
    set_seed(args.seed)
    arch = models.get_arch(args.arch)
    data = _image_data(args, arch_stats(arch))
    print(f"{len(data.train_ds)} training and {len(data.valid_ds)} validation images; "
          f"{data.c} classes: {', '.join(str(c) for c in data.classes)}", flush=True)
    metric = accuracy_thresh if args.label_delim else accuracy  # several labels per image: thresholded
    learn = cnn_learner(data, arch, pretrained=args.pretrained, metrics=metric)
    learn.fit_one_cycle(args.epochs, args.lr)
    if args.unfreeze_epochs:
        learn.unfreeze()
        learn.fit_one_cycle(args.unfreeze_epochs, slice(args.lr / 100, args.lr / 10))
    metrics = learn.validate()
    file = learn.export(out.absolute())
    print(f"valid_loss={float(metrics[0]):.4f} {metric.__name__}={float(metrics[1]):.4f}")
    print(f"saved {file}")
    return 0


def _load_model(model: str) -> Any:
    """The exported learner in the file `model`, on the CPU."""
    file = Path(model)
    if not file.is_file():
        raise CommandError(f"no such model file: {file}" + (" (it is a folder)" if file.is_dir() else ""))
    from deftly.export import load_learner

    return load_learner(file.parent, file.name)


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict each image file with an exported model: one JSON line per file on stdout."""
    if not Path(args.model).is_file():  # before the slow imports
        _load_model(args.model)
    import torch

    torch.set_num_threads(args.threads or min(4, os.cpu_count() or 1))
    learn = _load_model(args.model)
    if args.bf16:
        learn.to_bf16()
    from deftly.serve.classify import image_classes, ranked_prediction
    from deftly.vision import open_image

    classes = image_classes(learn, args.model, "`deftly predict` reads image files")
    failures = 0
    for name in args.files:
        try:
            line = {"file": name, **ranked_prediction(learn, classes, open_image(name), args.top)}
        except (OSError, ValueError) as e:  # DataError is a ValueError: the file, not the model, is at fault
            print(f"{PROG} predict: error: {_error_line(e)}", file=sys.stderr, flush=True)
            failures += 1
            continue
        print(json.dumps(line), flush=True)
    return 1 if failures else 0


def _host_list(text: str | None) -> tuple[str, ...] | None:
    """--allowed-hosts: comma-separated host names (None when not given)."""
    if text is None:
        return None
    return tuple(h.strip() for h in text.split(",") if h.strip())


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve an exported image classifier as a web app (a page, POST /predict, GET /health)."""
    if not Path(args.model).is_file():  # before the slow imports
        _load_model(args.model)
    from deftly.serve import ServeSettings, serve

    settings = ServeSettings(max_upload_bytes=int(args.max_upload_mb * 2 ** 20),
                             max_pixels=int(args.max_megapixels * 1e6), urls=not args.no_urls,
                             allow_local_urls=args.allow_local_urls, url_timeout=args.url_timeout,
                             allowed_hosts=_host_list(args.allowed_hosts), bf16=args.bf16,
                             **({"parallel": args.parallel} if args.parallel else {}))

    serving: list[str] = []

    def ready(url: str) -> None:
        serving.append(url)
        print(f"serving {Path(args.model).name} on {url} (Ctrl-C stops)", flush=True)

    try:
        serve(args.model, host=args.host, port=args.port, settings=settings, threads=args.threads or None,
              quiet=args.quiet, on_ready=ready)
    except KeyboardInterrupt:
        if not serving:
            raise
    return 0  # Ctrl-C is how a running server is meant to stop


def cmd_download_images(args: argparse.Namespace) -> int:
    """Download the images listed in a file of URLs into a folder."""
    from deftly.datasets import download_images

    result = download_images(args.urls, args.dest, max_pics=args.max_pics, max_workers=args.max_workers,
                             timeout=args.timeout, retries=args.retries, show_progress=False if args.quiet else None)
    total = len(result.saved) + len(result.failed)
    print(json.dumps({"dest": str(result.dest), "saved": len(result.saved), "failed": len(result.failed)}))
    if total and not result.saved:
        raise CommandError(f"none of the {total} URLs gave an image (first error: {result.failed[0][1]})")
    return 0


def cmd_verify_images(args: argparse.Namespace) -> int:
    """Check the images in a folder; delete the unreadable ones with --delete, shrink large ones."""
    from deftly.datasets import verify_images

    result = verify_images(args.folder, delete=args.delete, max_workers=args.max_workers, max_size=args.max_size,
                           recurse=args.recurse, dest=args.dest, n_channels=args.n_channels or None, ext=args.ext,
                           show_progress=False if args.quiet else None)
    print(json.dumps({"checked": result.checked, "bad": len(result.bad), "deleted": len(result.deleted),
                      "written": len(result.written), "failed": len(result.failed)}))
    if not result.ok:
        kept = len(result.bad) - len(result.deleted)
        problems = []
        if kept:
            problems.append(f"{kept} unreadable image{'s' if kept > 1 else ''} left in place "
                            "(run with --delete to remove them)")
        if result.failed:
            problems.append(f"{len(result.failed)} image(s) could not be rewritten")
        raise CommandError("; ".join(problems))
    return 0


def _examples_dir() -> Path:
    """The repository's examples/ folder (next to the package in a source checkout)."""
    return Path(__file__).resolve().parent.parent / "examples"


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the lesson 1 demo (examples/lesson1_pets.py); extra arguments go to it."""
    import importlib.util

    script = _examples_dir() / "lesson1_pets.py"
    if not script.is_file():
        raise CommandError(f"the demo script {script} is not here: `deftly demo` runs from a source checkout "
                           "of deftly (the examples/ folder is not installed with the package)")
    spec = importlib.util.spec_from_file_location("deftly_demo_lesson1", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rest = list(args.demo_args)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    if args.quiet:
        os.environ["DEFTLY_PROGRESS"] = "0"
    module.main(rest)
    return 0


# ------------------------------------------------------------------------------------------ parser


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the descriptions' paragraphs and shows the defaults worth showing (not None/False/'')."""

    def _get_help_string(self, action: argparse.Action) -> str:
        """The option's help, with its default appended when it says something."""
        text = action.help or ""
        default = action.default
        if ("(default" in text or default in (None, True, False, "") or default is argparse.SUPPRESS
                or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


def _paragraphs(text: str, width: int = 88) -> str:
    """`text` with each paragraph (separated by a blank line) filled to `width` columns."""
    return "\n\n".join(textwrap.fill(par, width) for par in text.split("\n\n"))


def _common() -> argparse.ArgumentParser:
    """Options every sub-command takes (accepted before or after it)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="on an error, show the full traceback")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no progress output (as DEFTLY_PROGRESS=0)")
    return p


_BF16_HELP = ("predict in bfloat16 autocast: about 1.5x faster on a CPU with native bf16 (AVX512-BF16 or AMX), "
              "slower elsewhere; probabilities differ from float32 ones in the second or third decimal")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `deftly` command and its sub-commands."""
    from deftly import __version__

    common = _common()
    intro, examples, status = __doc__.split("\n\n")[:3]
    parser = argparse.ArgumentParser(prog=PROG, description=f"{intro}\n\n{examples}", epilog=status,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str,
            description: str) -> argparse.ArgumentParser:
        """A sub-command running `func`."""
        p = sub.add_parser(name, help=help_, description=_paragraphs(description), parents=[common],
                           formatter_class=_Formatter)
        p.set_defaults(func=func)
        return p

    p = add("train", cmd_train, "fine-tune an image classifier and export it to one file",
            "Fine-tune a pretrained CNN (cnn_learner + fit_one_cycle) on labelled images and export it with "
            "learn.export().\n\nDATA is a folder with train/<label>/* and valid/<label>/* (or only train/, "
            "or <label>/* directly in DATA as lesson 2's downloads, split at random by --valid-pct), or a CSV "
            "of file names and labels (the first two columns; images relative to the CSV's folder, or to "
            "--folder; --label-delim for several labels per image).")
    p.add_argument("data", metavar="DATA", help="a folder of images or a CSV of file names and labels")
    p.add_argument("--arch", default="efficientnet_lite0",
                   help="architecture: resnet18/34/50, efficientnet_lite0, or a timm name")
    p.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                   help="start from random weights (no ImageNet weights needed)")
    p.add_argument("--size", type=_positive_int, default=224, help="image size the model sees")
    p.add_argument("--epochs", type=_positive_int, default=4, help="epochs with the pretrained body frozen")
    p.add_argument("--unfreeze-epochs", type=_natural_int, default=0,
                   help="then epochs with every layer training (learning rates lr/100 .. lr/10)")
    p.add_argument("--lr", type=_positive_float, default=3e-3, help="maximum learning rate of the one-cycle schedule")
    p.add_argument("--bs", type=_positive_int, default=64, help="batch size")
    p.add_argument("--valid-pct", type=_fraction, default=None,
                   help="fraction of images held out for validation (default: the valid/ folder if any, else 0.2)")
    p.add_argument("--train", default="train", help="the training sub-folder of DATA (DATA itself when there is none)")
    p.add_argument("--valid", default="valid", help="the validation sub-folder of DATA")
    p.add_argument("--folder", default=None, help="with a CSV: the folder of the images, relative to the CSV's")
    p.add_argument("--suffix", default="", help="with a CSV: added to each file name (e.g. .jpg)")
    p.add_argument("--label-delim", default=None, help="with a CSV: separator of several labels (multi-label)")
    p.add_argument("--no-flip", action="store_true", help="no horizontal flips in the augmentation")
    p.add_argument("--seed", type=int, default=42, help="random seed (the validation split and the run)")
    p.add_argument("--threads", type=_natural_int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", default="export.pkl", help="the model file to write")

    p = add("predict", cmd_predict, "predict image files with an exported model (JSON lines)",
            "Load a model written by `deftly train` or learn.export() and print one JSON line per image: "
            '{"file": ..., "prediction": ..., "probabilities": [[class, p], ...]} with the most probable first. '
            "Files that cannot be read are reported on stderr and the exit status is 1.")
    p.add_argument("model", metavar="MODEL", help="the exported model file")
    p.add_argument("files", metavar="FILE", nargs="+", help="image files")
    p.add_argument("--top", type=_natural_int, default=0, help="only the K most probable classes (0: all)")
    p.add_argument("--threads", type=_natural_int, default=0, help="torch CPU threads (0: up to 4)")
    p.add_argument("--bf16", action="store_true", help=_BF16_HELP)

    p = add("serve", cmd_serve, "serve an exported image classifier as a web app",
            "Load a model written by `deftly train` or learn.export() once and serve it over HTTP: GET / is a page "
            "where you pick, drop or paste an image (or an image URL) and see the ranked predictions; POST /predict "
            "takes multipart/form-data with `file` (or `url`) and answers JSON "
            '{"prediction": ..., "probabilities": [[class, p], ...], "image": {...}}; GET /health answers '
            '{"status": "ok", ...}. Refused requests get a JSON {"error": ...} with a 4xx status. The first line '
            "on stdout gives the address; --port 0 picks a free port; --quiet leaves only warnings in the server's log "
            "(no line per request).")
    p.add_argument("model", metavar="MODEL", help="the exported model file")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every network)")
    p.add_argument("--port", type=_natural_int, default=8000, help="port to listen on (0: a free one)")
    p.add_argument("--max-upload-mb", type=_positive_float, default=10.0, help="largest image accepted, in MiB")
    p.add_argument("--max-megapixels", type=_positive_float, default=40.0,
                   help="most pixels an image may have, in millions (a decompression-bomb guard)")
    p.add_argument("--parallel", type=_natural_int, default=0,
                   help="predictions run at once, each in a worker thread; more requests wait their turn "
                        "(0: the usable cores, at most 4)")
    p.add_argument("--threads", type=_natural_int, default=0,
                   help="torch CPU threads for each prediction (0: the usable cores divided by --parallel)")
    p.add_argument("--no-urls", action="store_true", help="do not fetch images from URLs (uploads only)")
    p.add_argument("--allow-local-urls", action="store_true",
                   help="let URLs point at this machine or private networks (refused by default)")
    p.add_argument("--url-timeout", type=_positive_float, default=10.0, help="seconds a URL has to send its image")
    p.add_argument("--allowed-hosts", metavar="HOSTS", default=None,
                   help="comma-separated Host names the server answers ('*.example.com' for subdomains, '*' for "
                        "any); default: localhost, 127.0.0.1, ::1 and --host when listening on a loopback address, "
                        "any otherwise")
    p.add_argument("--bf16", action="store_true", help=_BF16_HELP)

    p = add("download-images", cmd_download_images, "download the images listed in a file of URLs",
            "Download each URL of URLS (one a line, as lesson 2's urls.txt) into DEST as 00000000.jpg, "
            "00000001.png, ...; what is not a decodable image (an HTML page, a corrupt or huge file) is skipped "
            "and reported. Prints a JSON summary; exit status 1 when no URL gave an image.")
    p.add_argument("urls", metavar="URLS", help="text file with one image URL a line")
    p.add_argument("dest", metavar="DEST", help="folder to save the images in (created if needed)")
    p.add_argument("--max-pics", type=_natural_int, default=1000, help="at most this many URLs")
    p.add_argument("--max-workers", type=_natural_int, default=8,
                   help="parallel downloads; 0 downloads one at a time and prints each error")
    p.add_argument("--timeout", type=_positive_float, default=4, help="seconds to wait for a server")
    p.add_argument("--retries", type=_natural_int, default=2, help="further tries after a timeout or server error")

    p = add("verify-images", cmd_verify_images, "find unreadable images; delete them, shrink large ones",
            "Decode every image in FOLDER and report the ones that cannot be read (deleted with --delete; "
            "nothing outside FOLDER is ever deleted). With --max-size, larger images are resized keeping their "
            "aspect ratio; images without --n-channels channels are converted; both are written to --dest "
            "(relative to FOLDER; '.' rewrites them in place). Prints a JSON summary; exit status 1 when "
            "unreadable images remain.")
    p.add_argument("folder", metavar="FOLDER", help="folder of images")
    p.add_argument("--delete", action="store_true", help="delete the images that cannot be read")
    p.add_argument("--max-size", type=_positive_int, default=None, help="resize images larger than this many pixels")
    p.add_argument("--n-channels", type=int, choices=(0, 1, 3, 4), default=3,
                   help="channels every image should have (0: leave them as they are)")
    p.add_argument("--dest", default=".", help="where resized or converted images go, relative to FOLDER")
    p.add_argument("--ext", default=None, help="extension of the rewritten images (e.g. .jpg)")
    p.add_argument("--recurse", action="store_true", help="also check sub-folders")
    p.add_argument("--max-workers", type=_natural_int, default=4, help="parallel checks; 0 checks one at a time")

    add("demo", cmd_demo, "run the lesson 1 demo (examples/lesson1_pets.py); `deftly demo --help` for its options",
        "Run lesson 1 on the bundled Pets-shaped sample: data, lr_find, fit_one_cycle, interpretation, "
        "unfreeze and fine-tune; the last line is `demo: accuracy=... seconds=...`. Every argument after "
        "`demo` goes to the script.")
    return parser


# ------------------------------------------------------------------------------------------ main


def _error_line(e: BaseException) -> str:
    """One line saying what went wrong."""
    text = " ".join(str(e).split())
    if isinstance(e, (CommandError,)) or _is_deftly_error(e):
        return text
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.strerror or e}: {e.filename}"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _is_deftly_error(e: BaseException) -> bool:
    """True for the errors deftly raises on purpose (their message says it all)."""
    from deftly.core.errors import DeftlyError

    return isinstance(e, DeftlyError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `deftly` command with `argv` (default: sys.argv[1:]); returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    demo_args: list[str] = []
    if first is not None and argv[first] == "demo":  # everything after `demo` belongs to the script
        argv, demo_args = argv[:first + 1], argv[first + 1:]
    args = parser.parse_args(argv)
    args.demo_args = demo_args
    if getattr(args, "command", None) is None:
        parser.print_help(sys.stderr)
        return 2
    args.debug = getattr(args, "debug", False)
    args.quiet = getattr(args, "quiet", False)
    if args.quiet:
        os.environ["DEFTLY_PROGRESS"] = "0"  # read by deftly.core.device.defaults when first imported
        from deftly.core.device import defaults

        defaults.progress = False
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001  (every failure becomes one line and status 1)
        if args.debug:
            traceback.print_exc()
        expected = isinstance(e, CommandError) or _is_deftly_error(e) or isinstance(e, OSError)
        hint = "" if expected or args.debug else " (run with --debug for the traceback)"
        print(f"{PROG} {args.command}: error: {_error_line(e)}{hint}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
