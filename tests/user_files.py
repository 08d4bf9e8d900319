"""A user's files in an output folder, and the check that they survived (by SHA-256)."""

import hashlib
import os


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def put_user_files(folder) -> dict:
    """A user's notes, a user's own model.keras and a sub-folder of theirs; returns
    {path: hash}."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("my experiment notes\n")
    (folder / "model.keras").write_bytes(os.urandom(2048))
    (folder / "data").mkdir(exist_ok=True)
    (folder / "data" / "labels.csv").write_text("0,cat\n")
    return {p: sha256(p) for p in (folder / "notes.txt", folder / "model.keras",
                                   folder / "data" / "labels.csv")}


def assert_untouched(hashes: dict) -> None:
    for path, digest in hashes.items():
        assert path.exists(), f"{path} was deleted"
        assert sha256(path) == digest, f"{path} was overwritten"
