"""Output folders: a command replaces only what it wrote itself.

Every command and function of the package that writes into a folder follows one rule:
it may replace the files an earlier run of the same kind wrote there (which that run
recorded: an export's `manifest.json`, a training run's `config.json`, the quickstart's
`results.json`, ...), and nothing else. Anything else in the folder ("foreign" entries)
is refused before any work starts, unless the user allows writing beside it; even then
a foreign entry is never deleted or overwritten.

A file the earlier run wrote may since have been replaced by the user (their own
model.keras put where the quickstart's was): the record keeps the SHA-256 of what was
written (`file_sha256`), and a file whose hash differs is foreign too
(`changed_since_written`).

This module holds the rule; each writer says which entries are its own.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping

# Prefix of the temporary folders and files the package creates while writing (a process
# killed mid-write can leave one behind; they are the package's own).
TEMPORARY_PREFIXES = (".byot-", ".tmp-", ".saving-")


class OutputFolderError(ValueError):
    """An output folder holds entries the command did not write, or is not a folder."""


def file_sha256(path: str) -> str:
    """The SHA-256 (hex) of the file at `path`, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def changed_since_written(folder: str, names: Iterable[str], record: str,
                          hashes: Mapping[str, str] | None) -> list[str]:
    """The files among `names` (relative to `folder`) that are no longer what the
    writer wrote: the writer recorded their SHA-256 in `hashes` (kept in its `record`
    file, e.g. results.json) and the file's differs now, so the user replaced it.

    A record written before hashes were kept (`hashes` None) cannot say; a file modified
    after `record` counts as changed then (the writers write their record last). Only
    existing files are hashed, and only those `names`.
    """
    changed = []
    record_path = os.path.join(folder, record)
    for name in names:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        if hashes is None:
            if os.path.isfile(record_path) and (
                    os.stat(path).st_mtime_ns > os.stat(record_path).st_mtime_ns):
                changed.append(name)
        elif name in hashes and file_sha256(path) != hashes[name]:
            changed.append(name)
    return changed


def recorded_hashes(value) -> dict[str, str] | None:
    """A record's {file: sha256} entry if it is one (else None: an older record)."""
    if isinstance(value, Mapping) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return dict(value)
    return None


def relative_files(folder: str) -> list[str]:
    """Every file under `folder`, as sorted paths relative to it ("/"-separated)."""
    found = []
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.relpath(os.path.join(root, name), folder)
            found.append(path.replace(os.sep, "/"))
    return sorted(found)


def describe(names: Iterable[str], limit: int = 4) -> str:
    """"'a', 'b' and 3 more": a few names for a message."""
    names = sorted(names)
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def require_folder_path(folder: str, flag: str = "output_dir") -> str:
    """The absolute path of `folder`; an existing file there is refused."""
    path = os.path.abspath(folder)
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputFolderError(f"--{flag} '{folder}' is a file, not a folder; give a folder "
                                "path.")
    return path


def foreign_entries(folder: str, owned: Iterable[str]) -> list[str]:
    """The entries of `folder` that are not `owned`, as relative paths.

    `owned` holds relative file paths ("cascade/segment_1.tflite") and folder paths
    ending in "/" ("checkpoints/": everything under it). A sub-folder that holds no owned
    path is reported as one entry ("notes/"), not file by file. Leftovers of the
    package's own temporary files count as owned.
    """
    owned = set(owned)
    owned_folders = {p for p in owned if p.endswith("/")}
    # Sub-folders that hold owned files: looked into, not reported whole.
    parents = {"/".join(p.rstrip("/").split("/")[:i]) + "/"
               for p in owned for i in range(1, p.rstrip("/").count("/") + 1)}
    foreign = []

    def visit(relative: str) -> None:
        for name in sorted(os.listdir(os.path.join(folder, relative))):
            path = relative + name
            full = os.path.join(folder, path)
            if name.startswith(TEMPORARY_PREFIXES):
                continue
            if os.path.isdir(full) and not os.path.islink(full):
                if path + "/" in owned_folders:
                    continue
                if path + "/" in parents:
                    visit(path + "/")
                    continue
                foreign.append(path + "/")
            elif path not in owned:
                foreign.append(path)

    if os.path.isdir(folder):
        visit("")
    return foreign


def check_output_folder(folder: str, *, owned: Iterable[str], writes: Iterable[str],
                        allow_others: bool, command: str, allow_flag: str,
                        flag: str = "output_dir", changed: Iterable[str] = (),
                        record: str = "") -> list[str]:
    """Refuses to write `writes` into `folder` when that could touch a foreign entry.

    Args:
        folder: the output folder (may not exist yet).
        owned: what an earlier run of the same writer wrote there (see `foreign_entries`).
        writes: relative paths this run will write (a "/"-ending entry: a folder it
            writes into).
        allow_others: the user allowed writing beside foreign entries (`--<allow_flag>`).
        command: who writes, for the message ("byot-export").
        allow_flag: the flag (or keyword argument) that allows foreign entries.
        changed: files the earlier run wrote but the user has replaced since (see
            `changed_since_written`): foreign, and named as such.
        record: the file that recorded what the earlier run wrote (for the message).

    Returns the foreign entries (empty, or kept when `allow_others`).

    Raises:
        OutputFolderError: `folder` is a file; a path this run writes is a foreign entry
            (never allowed); foreign entries without `allow_others`.
    """
    path = require_folder_path(folder, flag)
    changed = sorted(changed)
    foreign = foreign_entries(path, set(owned) - set(changed))
    writes = [w.rstrip("/") for w in writes]
    replaced = [p for p in changed if p in writes]
    if replaced:
        them = "it" if len(replaced) == 1 else "them"
        raise OutputFolderError(
            f"--{flag} '{folder}' holds {describe(replaced)}, which {command} wrote there "
            f"earlier but which {'has' if len(replaced) == 1 else 'have'} been replaced "
            f"since (not the file {record or 'its record'} records): {command} will not "
            f"overwrite {them}. Move {them} away or choose another --{flag}.")
    # A foreign file at a path this run writes, or a foreign folder it would write into.
    clashes = sorted(p for p in foreign if any(
        w == p.rstrip("/") or (p.endswith("/") and w.startswith(p)) for w in writes))
    if clashes:
        raise OutputFolderError(
            f"--{flag} '{folder}' already holds {describe(clashes)}, which {command} did not "
            f"write and would overwrite: move {'it' if len(clashes) == 1 else 'them'} away "
            f"or choose another --{flag}.")
    if foreign and not allow_others:
        raise OutputFolderError(
            f"--{flag} '{folder}' holds files {command} did not write ({describe(foreign)}). "
            f"Choose an empty or new --{flag}, or pass --{allow_flag} to write beside them "
            "(they are kept).")
    return foreign


def remove_empty_folders(folder: str, relatives: Iterable[str]) -> None:
    """Removes the (sub-)folders of the `relatives` paths under `folder` that are empty,
    deepest first; `folder` itself is kept."""
    parents = set()
    for relative in relatives:
        parts = relative.rstrip("/").split("/")
        parents.update("/".join(parts[:i]) for i in range(1, len(parts)))
        if relative.endswith("/"):
            parents.add(relative.rstrip("/"))
    for parent in sorted(parents, key=lambda p: -p.count("/")):
        full = os.path.join(folder, parent)
        if os.path.isdir(full) and not os.listdir(full):
            os.rmdir(full)
