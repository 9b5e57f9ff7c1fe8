"""What the command lines share: argparse types that reject bad numbers while parsing, and
:func:`user_errors`, which turns the package's own ``ValueError`` (and a missing file) into argparse's
answer.

Every entry point (``dg-train``, ``dg-generate``, ``python -m diffusion_geometry.metrics`` and the
scripts in ``benchmarks/``) answers bad input like a command line: one line ``prog: error: ...`` on
stderr after the usage, and exit status 2, never a Python traceback::

    parser = argparse.ArgumentParser(prog="dg-example")
    parser.add_argument("--steps", type=positive_int, required=True)
    args = parser.parse_args(argv)
    with user_errors(parser):
        run(args)          # a ValueError("...") from the package -> "dg-example: error: ..." and exit 2
"""
from __future__ import annotations

import argparse
import contextlib
import math

import torch

__all__ = ["positive_int", "non_negative_int", "positive_float", "fraction",
           "device", "user_errors", "USER_ERRORS"]

USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, KeyError)
"""Exceptions that :func:`user_errors` reports as a usage error: the package raises these for bad
values, unknown names and missing files."""


def _number(text: str, cast, what: str):
    try:
        value = cast(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (argparse ``type=``)."""
    value = _number(text, int, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (argparse ``type=``)."""
    value = _number(text, int, "a non-negative integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (argparse ``type=``)."""
    value = _number(text, float, "a positive number")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1] (argparse ``type=``)."""
    value = _number(text, float, "a number in [0, 1]")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def device(text: str) -> str:
    """A torch device string (``cpu``, ``cuda``, ``cuda:1``, ...) that this machine has; ``auto`` passes."""
    if text == "auto":
        return text
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} (try cpu or cuda)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA devices")
    return text


def _one_line(err: BaseException) -> str:
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(str(text).split()) or type(err).__name__


@contextlib.contextmanager
def user_errors(parser: argparse.ArgumentParser, kinds: tuple = USER_ERRORS):
    """Run the block; an exception of ``kinds`` becomes ``parser.error(message)``: the usage, one line
    ``prog: error: message`` on stderr, and ``SystemExit(2)``."""
    try:
        yield
    except kinds as err:
        parser.error(_one_line(err))
