"""Put a competition's CSVs into data/ (from Kaggle, a local folder or zip, or a Hugging Face
dataset), validate them and infer the schema into comp.yaml.

Files are unpacked into a staging folder inside data/ and validated there; only then are they moved
into place, so a bad download never leaves data/ half-written.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from comp.atomic import storage_errors
from comp.data import build_competition, fill_schema, infer_schema, read_csv
from comp.digest import sha256_file
from comp.errors import DataError
from comp.workspace import Workspace

REQUIRED = {"train": "train.csv", "test": "test.csv", "samplesubmission": "sample_submission.csv"}
_MAX_NESTED_ZIPS = 20


@dataclass
class FetchResult:
    files: list[str]
    filled: list[str] = field(default_factory=list)  # schema fields inferred into comp.yaml
    unchanged: bool = False
    notes: list[str] = field(default_factory=list)  # what a conversion decided (e.g. --hf's splits)


def _key(name: str) -> str:
    """'Sample_Submission.csv' -> 'samplesubmission'; matches the usual Kaggle spellings."""
    stem = name.lower()
    for suffix in (".zip", ".csv"):
        stem = stem.removesuffix(suffix)
    return re.sub(r"[^a-z0-9]", "", stem)


def _safe_extract(archive: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                target = (dest / info.filename).resolve()
                if not str(target).startswith(str(dest.resolve()) + os.sep) and target != dest.resolve():
                    raise DataError(f"{archive.name} contains an unsafe path '{info.filename}'; refusing to unpack it")
            zf.extractall(dest)
    except zipfile.BadZipFile:
        raise DataError(f"{archive} is not a valid zip file; download it again") from None


def _stage(source: Path, staging: Path) -> Path:
    """Copy or unpack ``source`` into ``staging``; unpack nested zips (Kaggle zips some CSVs)."""
    if source.is_dir():
        for path in source.rglob("*"):
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(source).parts):
                target = staging / path.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    elif source.is_file():
        if not zipfile.is_zipfile(source):
            raise DataError(
                f"{source} is neither a folder nor a zip file; pass the folder or zip of the competition files"
            )
        _safe_extract(source, staging)
    else:
        raise DataError(
            f"{source} does not exist; pass a folder or zip holding train.csv, test.csv, sample_submission.csv"
        )
    for _ in range(_MAX_NESTED_ZIPS):
        nested = [p for p in staging.rglob("*.zip") if p.is_file()]
        if not nested:
            break
        for archive in nested:
            _safe_extract(archive, archive.parent)
            archive.unlink()
    return staging


def _locate(staging: Path, origin: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(staging.rglob("*.csv"), key=lambda p: len(p.parts)):
        key = _key(path.name)
        if key in REQUIRED and key not in found:
            found[key] = path
    missing = [REQUIRED[k] for k in REQUIRED if k not in found]
    if missing:
        present = sorted(p.name for p in staging.rglob("*") if p.is_file())[:10]
        raise DataError(
            f"{origin} has no {', '.join(missing)} (found: {', '.join(present) or 'nothing'}); "
            "a competition needs train.csv, test.csv and sample_submission.csv"
        )
    return found


def install_from(ws: Workspace, source: Path, origin: str, force: bool = False, slug: str | None = None) -> FetchResult:
    """Validate the competition files found in ``source`` and move them into data/; infer the schema.

    ``slug`` is written into comp.yaml with the schema, only once the files are in place.
    """
    settings = ws.load_settings()
    with storage_errors(ws.data_dir, "write into"):
        ws.data_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=ws.data_dir))
    try:
        _stage(source, staging)
        found = _locate(staging, origin)
        # messages name the file as the user knows it, never the staging folder that is deleted afterwards
        frames = {
            key: read_csv(path, shown=_shown(path.relative_to(staging), source, origin)) for key, path in found.items()
        }
        inferred = infer_schema(frames["train"], frames["test"], frames["samplesubmission"])
        filled = fill_schema(settings, inferred)
        build_competition(settings, frames["train"], frames["test"], frames["samplesubmission"], ws.data_dir)

        targets = {ws.data_dir / REQUIRED[key]: path for key, path in found.items()}
        extras = {
            ws.data_dir / p.name: p
            for p in staging.rglob("*")
            if p.is_file() and p not in found.values() and not (ws.data_dir / p.name).exists()
        }
        changed = [t for t, p in targets.items() if t.exists() and sha256_file(t) != sha256_file(p)]
        if changed and not force:
            raise DataError(
                f"data/ already holds a different {changed[0].name}; pass --force to replace the competition "
                "files (fold files and runs made from the old data will no longer line up)"
            )
        unchanged = all(t.exists() for t in targets) and not changed
        with storage_errors(ws.data_dir, "write into"):
            for target, path in {**targets, **extras}.items():
                os.replace(path, target)
        if slug:
            settings.competition = slug
        ws.save_settings(settings)
        return FetchResult(sorted(ws.relative(t) for t in {**targets, **extras}), filled, unchanged)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _shown(relative: Path, source: Path, origin: str) -> str:
    """A staged file as the user knows it: the file in their folder, or its name in the zip/download."""
    if Path(source).is_dir():
        return str(Path(source) / relative)
    return f"{relative} in {origin}"


def fetch_local(ws: Workspace, source: Path, force: bool = False) -> FetchResult:
    return install_from(ws, Path(source), str(source), force)


def fetch_kaggle(ws: Workspace, slug: str | None, force: bool = False) -> FetchResult:
    from comp import kaggle_client

    settings = ws.load_settings()
    slug = slug or settings.competition
    if not slug:
        raise DataError("no competition slug: pass one (`comp fetch SLUG`) or set competition in comp.yaml")
    # comp.yaml takes the new slug only once its files are installed: a failed download changes nothing
    with tempfile.TemporaryDirectory(prefix=".download-", dir=ws.root) as tmp:
        archive = kaggle_client.download_competition(slug, Path(tmp))
        return install_from(ws, archive, f"the Kaggle download of '{slug}'", force, slug=slug)


def fetch_hf(ws: Workspace, spec: str, force: bool = False) -> FetchResult:
    from comp.hf_dataset import export_hf_dataset

    with tempfile.TemporaryDirectory(prefix=".hf-", dir=ws.root) as tmp:
        summary = export_hf_dataset(spec, Path(tmp))
        result = install_from(ws, Path(tmp), f"Hugging Face dataset '{spec}'", force)
        result.notes = summary.lines()
        return result
