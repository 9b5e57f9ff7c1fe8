"""Compute profiles: one switch that sizes every chapter's sample counts, steps and training runs.

``DG_PROFILE`` selects ``small`` (tests and CI: seconds per chapter), ``default`` (readers on a CPU
laptop and the book build: minutes) or ``gpu`` (paper-scale counts; picked automatically when CUDA
is present and ``DG_PROFILE`` is unset). Chapters print the profile at the top and read their sizes
through :func:`choose`.
"""
from __future__ import annotations

import os

import torch

__all__ = ["PROFILES", "current", "choose", "device"]

PROFILES = ("small", "default", "gpu")


def current() -> str:
    """The active profile: ``$DG_PROFILE`` if set, else ``gpu`` with CUDA, else ``default``."""
    name = os.environ.get("DG_PROFILE", "").strip().lower()
    if not name:
        return "gpu" if torch.cuda.is_available() else "default"
    if name not in PROFILES:
        raise ValueError(f"DG_PROFILE must be one of {PROFILES}, got {name!r}")
    return name


def choose(small, default, gpu=None):
    """The value for the active profile (``gpu`` falls back to ``default`` when not given)."""
    prof = current()
    if prof == "small":
        return small
    if prof == "gpu" and gpu is not None:
        return gpu
    return default


def device() -> torch.device:
    """``cuda`` in the gpu profile when available, else ``cpu`` (toy chapters stay on the CPU)."""
    return torch.device("cuda" if current() == "gpu" and torch.cuda.is_available() else "cpu")
