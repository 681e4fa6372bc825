"""The paper's outcome per variant, shown beside siamlab's numbers.

A study file's ``paper:`` maps a variant to a string or to a mapping with ``ref``
(where in the paper), ``top1`` (ImageNet linear top-1, %), ``outcome`` and ``note``.
Results folders carry it as each run's ``paper`` attr (YAML) when the run wrote one.
Here every annotation is normalised to such a mapping (a bare string becomes ``note``).
"""

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import xarray as xr
import yaml

from siamlab.config.study import read_study
from siamlab.results.store import METRICS_FILE, NETCDF_ENGINE

Note = dict[str, Any]
Notes = dict[str, dict[str, Note]]  # study -> variant -> note


def normalise(value: object) -> Note:
    """A study file entry, pydantic model or YAML text as a ``{ref, top1, outcome, note}`` dict."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(exclude_defaults=True)
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        value = parsed if isinstance(parsed, dict) else value
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items() if v not in (None, "")}
    return {"note": str(value)} if value not in (None, "") else {}


def paper_text(note: Mapping[str, Any]) -> str:
    """One line: ``Table 1 (a): 0.1 (collapse); note``."""
    head = ": ".join(str(note[k]) for k in ("ref", "top1") if k in note)
    outcome = f"({str(note['outcome']).replace('_', ' ')})" if "outcome" in note else ""
    main = " ".join(p for p in (head, outcome) if p)
    return "; ".join(p for p in (main, str(note.get("note", ""))) if p)


def from_study_file(path: str | Path) -> tuple[str, dict[str, Note]]:
    """(study name, variant -> note) of a study file, in the order of its variants.

    Raises:
        ConfigError: the file is missing or not a valid study.
    """
    study = read_study(path)
    order = [v for v in study.variants if v in study.paper] + list(study.paper)
    return study.name, {v: normalise(study.paper[v]) for v in dict.fromkeys(order)}


def from_runs(ds: xr.Dataset) -> dict[str, Note]:
    """Variant -> note from a ``paper`` variable or the runs' ``paper`` attrs on disk."""
    out: dict[str, Note] = {}
    if "paper" in ds.data_vars:
        for variant in ds["variant"].values:
            for text in ds["paper"].sel(variant=variant).values:
                if isinstance(text, str) and text and (note := normalise(text)):
                    out.setdefault(str(variant), note)
        return out
    folder = ds.attrs.get("results_dir")
    for path in sorted(Path(folder).glob(f"*/seed*/{METRICS_FILE}")) if folder else []:
        try:
            with xr.open_dataset(path, engine=NETCDF_ENGINE) as run:
                text = run.attrs.get("paper", "")
        except (OSError, ValueError, RuntimeError):  # RuntimeError: netCDF4 read errors
            continue
        if text and (note := normalise(text)):
            out.setdefault(path.parent.parent.name, note)
    return out


def paper_annotations(
    studies: Mapping[str, xr.Dataset],
    study_files: Sequence[str | Path] = (),
    search: Sequence[str | Path] = ("studies",),
) -> tuple[Notes, list[str]]:
    """The paper's outcome per study and variant, and notes on where it came from.

    Sources, first found wins: a given study file with the study's name (or the only
    file given, for one study), the runs' own ``paper`` attrs (ordered like
    ``<search>/<study>.yaml`` when it exists), ``<search>/<study>.yaml``.

    Raises:
        ConfigError: a given study file is missing or invalid.
    """
    files = [from_study_file(p) for p in study_files]
    by_name = {name: (notes, str(p)) for (name, notes), p in zip(files, study_files, strict=True)}
    out: Notes = {}
    messages: list[str] = []
    for study, ds in studies.items():
        chosen = by_name.get(study)
        if chosen is None and len(files) == 1 and len(studies) == 1:
            chosen = (files[0][1], str(study_files[0]))
            messages.append(f"study file {chosen[1]} is named {files[0][0]!r}, results {study!r}")
        if chosen is not None:
            out[study] = chosen[0]
            continue
        guess = _search(study, search)
        if notes := from_runs(ds):  # what the runs were annotated with; a file's order
            order = list(guess[1]) if guess else []
            out[study] = {v: notes[v] for v in sorted(notes, key=_rank(order))}
        elif guess:
            out[study] = guess[1]
            messages.append(f"paper annotations of {study!r} from {guess[0]}")
    return out, messages


def _search(study: str, folders: Sequence[str | Path]) -> tuple[Path, dict[str, Note]] | None:
    for candidate in (Path(f) / f"{study}.yaml" for f in folders):
        if candidate.is_file():
            try:
                return candidate, from_study_file(candidate)[1]
            except Exception:  # noqa: BLE001 - an unreadable guess is simply not used
                continue
    return None


def _rank(order: list[str]) -> Callable[[str], int]:
    return lambda v: order.index(v) if v in order else len(order)
