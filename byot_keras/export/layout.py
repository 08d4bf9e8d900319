"""The export folder: where an export's files are written, and how a new export replaces
an earlier one.

Files are written into a staging folder first; only a complete export is published into
the output folder. Publishing replaces exactly the files the earlier export listed in its
`manifest.json` that are still what it wrote (the manifest records their SHA-256 in
`file_sha256`; a file the user has put in place of one since is theirs) and leaves
everything else in the folder as it was. A folder holding entries that no export wrote
is refused before any conversion work, unless the caller allows writing beside them
(`allow_other_files`); they are never deleted or overwritten. A failed export leaves the
earlier one untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable

from byot_keras.folders import (
    OutputFolderError,
    changed_since_written,
    check_output_folder,
    file_sha256,
    recorded_hashes,
    relative_files,
    remove_empty_folders,
    require_folder_path,
)

MANIFEST = "manifest.json"
LABELS = "labels.txt"
CASCADE = "cascade"
ALLOW_FLAG = "allow_other_files"


def exported_files(manifest: dict) -> list[str]:
    """The files an export wrote, from its manifest: its "files" list, or, for manifests
    written before that list existed, every file its entries name."""
    if isinstance(manifest.get("files"), list):
        return sorted({str(f) for f in manifest["files"]} | {MANIFEST})
    files = {MANIFEST, str(manifest.get("labels_file") or LABELS)}
    for entry in manifest.get("exits") or []:
        for group in ("files", "segment"):
            files.update(info["file"] for info in (entry.get(group) or {}).values())
    for info in ((manifest.get("multi_signature") or {}).get("files") or {}).values():
        files.add(info["file"])
    return sorted(files)


def previous_export(folder: str) -> tuple[list[str], list[str]]:
    """The files of the export in `folder` (those its manifest lists and that exist), and
    those among them the user has replaced since (their SHA-256 differs from the one the
    manifest records; for manifests written before the hashes: modified after the
    manifest). Both empty when the folder holds no manifest written by an export."""
    path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(path):
        return [], []
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return [], []  # not ours: reported as a foreign entry
    if not isinstance(manifest, dict) or "format_version" not in manifest or (
            "exits" not in manifest):
        return [], []
    files = [f for f in exported_files(manifest) if os.path.isfile(os.path.join(folder, f))]
    changed = changed_since_written(folder, [f for f in files if f != MANIFEST], MANIFEST,
                                    recorded_hashes(manifest.get("file_sha256")))
    return files, changed


class ExportFolder:
    """One export into `output_dir`, as a context manager that yields the staging folder.

    Args:
        output_dir: the export folder (created if missing).
        planned: the relative paths the export will write (checked against foreign
            entries before any work).
        allow_other_files: write into a folder that holds entries no export wrote (they
            are kept). Without it such a folder is refused.
        command: who exports, for messages.

    Leaving the `with` block normally publishes the staging folder's files (see the
    module docstring); an exception discards them.

    Example:
        >>> import pathlib
        >>> out = pathlib.Path("export")
        >>> with ExportFolder(str(out), ["a.tflite"]) as export:
        ...     _ = (pathlib.Path(export.staging) / "a.tflite").write_bytes(b"tflite")
        ...     _ = export.write_manifest({"format_version": 1, "exits": []})
        >>> sorted(p.name for p in out.iterdir())
        ['a.tflite', 'manifest.json']
    """

    def __init__(self, output_dir: str, planned: Iterable[str], *,
                 allow_other_files: bool = False, command: str = "export_tflite"):
        self.output_dir = require_folder_path(output_dir)
        previous, changed = previous_export(self.output_dir)
        # What publishing replaces: the earlier export's files the user left as they were.
        self.previous = [f for f in previous if f not in changed]
        self.planned = sorted({*planned, MANIFEST})
        self.command = command
        self.kept = check_output_folder(
            self.output_dir, owned=previous, writes=self.planned,
            allow_others=allow_other_files, command=command, allow_flag=ALLOW_FLAG,
            changed=changed, record=MANIFEST)
        self.staging = None

    def __enter__(self) -> ExportFolder:
        if os.path.isdir(self.output_dir):
            where, prefix = self.output_dir, ".byot-export-"
        else:
            where = os.path.dirname(self.output_dir)
            os.makedirs(where, exist_ok=True)
            prefix = f".byot-export-{os.path.basename(self.output_dir)}-"
        self.staging = tempfile.mkdtemp(prefix=prefix, dir=where)
        return self

    def __exit__(self, kind, error, traceback) -> None:
        try:
            if kind is None:
                self._publish()
        finally:
            if self.staging and os.path.exists(self.staging):
                shutil.rmtree(self.staging, ignore_errors=True)

    def write_manifest(self, manifest: dict) -> dict:
        """Records every staged file in `manifest["files"]`, and their SHA-256 in
        `manifest["file_sha256"]`, and writes `manifest.json` (the last file of an
        export). Returns the manifest."""
        staged = relative_files(self.staging)
        manifest["files"] = sorted({*staged, MANIFEST})
        # A later export replaces a file only while it is still this one.
        manifest["file_sha256"] = {f: file_sha256(os.path.join(self.staging, f))
                                   for f in staged if f != MANIFEST}
        with open(os.path.join(self.staging, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=2)
        return manifest

    def _publish(self) -> None:
        new = relative_files(self.staging)
        if not os.path.isdir(self.output_dir):
            os.rename(self.staging, self.output_dir)  # a new folder: one atomic rename
            return
        previous = set(self.previous)
        appeared = [f for f in new if f not in previous
                    and os.path.lexists(os.path.join(self.output_dir, f))]
        if appeared:
            raise OutputFolderError(
                f"'{self.output_dir}' gained {appeared[:4]} during the export; {self.command} "
                "does not overwrite files it did not write. Nothing was changed.")
        # The manifest moves last, so a reader that finds it finds the files it lists.
        new.sort(key=lambda f: f == MANIFEST)
        backup = tempfile.mkdtemp(prefix=".byot-replaced-", dir=self.output_dir)
        moved_away, placed = [], []
        try:
            for relative in self.previous:
                _move(self.output_dir, backup, relative)
                moved_away.append(relative)
            for relative in new:
                _move(self.staging, self.output_dir, relative)
                placed.append(relative)
        except BaseException:
            for relative in reversed(placed):
                _move(self.output_dir, self.staging, relative)
            for relative in reversed(moved_away):
                _move(backup, self.output_dir, relative)
            shutil.rmtree(backup, ignore_errors=True)
            raise
        shutil.rmtree(backup, ignore_errors=True)
        remove_empty_folders(self.output_dir, [f for f in self.previous if f not in new])


def _move(source_root: str, target_root: str, relative: str) -> None:
    target = os.path.join(target_root, relative)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.rename(os.path.join(source_root, relative), target)
