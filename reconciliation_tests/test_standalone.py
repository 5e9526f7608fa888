"""The repository stands on its own: a clone on anyone's machine runs `make test`.

Test data and the contracts the code follows live in the repository
(`reconciliation_tests/data/`, `docs/`), so no source, test or document may point at a
path outside it: an absolute path of the machine it was written on, or a sibling folder.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: written in two pieces so that this file does not match itself
OUTSIDE = ("/wo" + "rk/", "../sha" + "red", "sha" + "red/bookmarked/", "sha" + "red/external/")
#: folders never scanned when git is not there to say what is tracked
UNTRACKED = {".venv", ".git", ".dagster_home", "demo", "reports", "storage", "__pycache__"}


def tracked_files() -> list[Path]:
    """The files git tracks; without git (a tarball), every file outside generated folders."""
    git = shutil.which("git")
    if git and (ROOT / ".git").exists():
        listed = subprocess.run(
            [git, "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout.decode()
        return [ROOT / name for name in listed.split("\0") if name]
    return [
        path
        for path in ROOT.rglob("*")
        if path.is_file() and not UNTRACKED & set(path.relative_to(ROOT).parts)
    ]


def test_no_file_points_outside_the_repository() -> None:
    found = []
    for path in tracked_files():
        if not path.is_file():  # deleted in the working tree, not yet committed
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        for number, line in enumerate(text.splitlines(), start=1):
            found += [
                f"{path.relative_to(ROOT)}:{number}: {piece!r}"
                for piece in OUTSIDE
                if piece in line
            ]
    assert found == [], "paths outside the repository:\n" + "\n".join(found)


def test_the_documented_schema_is_the_one_the_code_builds() -> None:
    """docs/bookmarked/schema.sql is the contract; reconciliation/bookmarked/schema.sql is
    the copy the code and the tests build databases from: they must not drift apart."""
    documented = ROOT / "docs" / "bookmarked" / "schema.sql"
    assert documented.read_bytes() == (ROOT / "reconciliation/bookmarked/schema.sql").read_bytes()


def test_public_samples_carry_their_licences() -> None:
    samples = ROOT / "reconciliation_tests" / "data" / "oneroster"
    readme = (samples / "README.md").read_text(encoding="utf-8")
    for folder in sorted(p for p in samples.iterdir() if p.is_dir()):
        assert f"`{folder.name}/`" in readme, folder.name
    assert "Apache License" in (samples / "LICENSE-Apache-2.0.txt").read_text(encoding="utf-8")
    assert "MIT License" in (samples / "LICENSE-MIT-DA2022.txt").read_text(encoding="utf-8")
