"""Checkpoints: save and load trained networks safely, and find the weights shipped with the package.

A checkpoint is one ``torch.save`` file holding a plain dictionary

.. code-block:: python

    {"state_dict": {name: tensor}, "config": {...}, "meta": {...}}

where ``config`` is the JSON-like dictionary that :func:`diffusion_geometry.networks.build_model`
turns back into a network, and ``meta`` records how it was made (steps, wall time, losses, ...).
Files are read with ``torch.load(..., weights_only=True)``, which unpickles tensors and plain Python
containers only, never arbitrary objects, and -- when a SHA-256 digest is given -- only after the
file's bytes have been checked against it. A corrupted, truncated or foreign file raises a
``ValueError`` that names the file; it never yields a silently wrong model.

The weights shipped in ``diffusion_geometry/weights/`` are listed in ``weights/manifest.json``::

    {name: {"file": "NAME.pt", "sha256": "...", "command": "the exact shell command that made it",
            "kind": "...", "config": {...}, "trained": "what, how long, metrics"}}

:func:`manifest` reads that file and :func:`pretrained_path` returns the verified path of one entry.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "WEIGHTS_DIR",
    "sha256_file",
    "save_checkpoint",
    "load_checkpoint",
    "manifest",
    "pretrained_path",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
"""The directory of the weights shipped with the package (``manifest.json`` and ``*.pt``)."""

_KEYS = ("state_dict", "config", "meta")


def sha256_file(path) -> str:
    """The SHA-256 hex digest of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_jsonable(obj, what: str) -> None:
    """Reject values that ``weights_only`` loading or the JSON manifest could not carry."""
    try:
        json.dumps(obj, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what} must be a JSON-serialisable dict of plain values: {err}") from None


def save_checkpoint(path, model: nn.Module, *, config: dict, meta: dict | None = None) -> str:
    """Save ``{"state_dict", "config", "meta"}`` of ``model`` to ``path``; return the file's SHA-256.

    Tensors are moved to the CPU (a checkpoint written on a GPU loads anywhere). ``config`` and
    ``meta`` must be JSON-serialisable dictionaries (plain numbers, strings, lists, dicts), so that
    the file loads with ``weights_only=True`` and the config can be copied into the manifest.
    The file is written to a temporary name and renamed, so a crash never leaves half a checkpoint.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    meta = {} if meta is None else meta
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict or None, got {type(meta).__name__}")
    _check_jsonable(config, "config")
    _check_jsonable(meta, "meta")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {"state_dict": state, "config": json.loads(json.dumps(config)),
               "meta": json.loads(json.dumps(meta))}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return sha256_file(path)


def load_checkpoint(path, *, sha256: str | None = None) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`: ``{"state_dict", "config", "meta"}``.

    With ``sha256`` the file's bytes are verified first (``ValueError`` naming the file, the expected
    and the actual digest). Loading uses ``torch.load(..., map_location="cpu", weights_only=True)``;
    a file that is corrupted, truncated, not a torch file, or not a checkpoint dictionary raises a
    ``ValueError`` that names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if sha256 is not None:
        if not isinstance(sha256, str):
            raise TypeError(f"sha256 must be a hex string, got {type(sha256).__name__}")
        actual = sha256_file(path)
        if actual != sha256.lower():
            raise ValueError(
                f"checksum mismatch for {path}: expected sha256 {sha256.lower()}, got {actual} "
                "(the file is corrupted, truncated or not the one the manifest describes)"
            )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, OSError,
            ValueError, KeyError, IndexError, AttributeError, TypeError, io.UnsupportedOperation) as err:
        raise ValueError(f"{path} is not a readable checkpoint (corrupted or not a torch file): "
                         f"{type(err).__name__}: {str(err)[:200]}") from None
    if not isinstance(obj, dict) or any(k not in obj for k in _KEYS):
        found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path} is not a diffusion_geometry checkpoint: expected a dict with keys "
                         f"{list(_KEYS)}, found {found}")
    state = obj["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: 'state_dict' must map names to tensors")
    for name, value in state.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ValueError(f"{path}: parameter {name!r} contains NaN or inf")
    if not isinstance(obj["config"], dict) or not isinstance(obj["meta"], dict):
        raise ValueError(f"{path}: 'config' and 'meta' must be dicts")
    return obj


def manifest(path=None) -> dict:
    """The manifest of shipped weights (``weights/manifest.json``, or ``path``) as a dict."""
    path = Path(path) if path is not None else WEIGHTS_DIR / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"weights manifest not found: {path}")
    with open(path) as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the manifest must be a JSON object {{name: entry}}")
    for name, entry in data.items():
        missing = [k for k in ("file", "sha256", "command", "kind", "config", "trained") if k not in entry]
        if missing:
            raise ValueError(f"{path}: entry {name!r} lacks {missing}")
    return data


def pretrained_path(name: str, *, weights_dir=None) -> Path:
    """The path of shipped weights ``name``, after checking the file against the manifest's SHA-256.

    Raises ``KeyError`` listing the available names for an unknown ``name``, ``FileNotFoundError``
    when the file is missing and ``ValueError`` when its digest does not match.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    directory = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    entries = manifest(directory / "manifest.json")
    if name not in entries:
        raise KeyError(f"no shipped weights named {name!r}; available: {sorted(entries)}")
    entry = entries[name]
    path = directory / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(f"weights file for {name!r} is missing: {path} "
                                f"(re-create it with: {entry['command']})")
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise ValueError(f"checksum mismatch for {path}: expected sha256 {entry['sha256']}, got {actual}")
    return path

