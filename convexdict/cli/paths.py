"""Output paths are checked before any work starts (a bad path never wastes a run).

:func:`check_output_file` and :func:`check_output_dir` walk up to the first existing
ancestor: it must be a writable directory, and nothing on the way may be a file. They
create nothing; the writers create folders when the results are ready.
"""

from __future__ import annotations

import os
from pathlib import Path

from convexdict.cli import CLIError


def _first_existing(path: Path, flag: str) -> Path:
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise CLIError(
                    f"{flag} {str(path)!r}: {str(parent)!r} is a file, so nothing can be "
                    "written below it; choose another path."
                )
            if not os.access(parent, os.W_OK | os.X_OK):
                raise CLIError(f"{flag} {str(path)!r}: the folder {str(parent)!r} is not writable.")
            return parent
    return Path(".")


def check_output_file(path: str | os.PathLike[str] | None, flag: str) -> Path | None:
    """Check that a file can be written at ``path`` (or None): not a folder, writable parent.

    Raises
    ------
    CLIError
        Naming ``flag`` and the offending path.
    """
    if path is None:
        return None
    target = Path(path)
    if target.is_dir():
        raise CLIError(f"{flag} {str(path)!r} is a directory; expected a file path.")
    if target.exists() and not os.access(target, os.W_OK):
        raise CLIError(f"{flag} {str(path)!r} exists and is not writable.")
    _first_existing(target.parent, flag)
    return target


def check_output_dir(path: str | os.PathLike[str] | None, flag: str) -> Path | None:
    """Check that ``path`` is, or can become, a writable folder (or None).

    Raises
    ------
    CLIError
        Naming ``flag`` and the offending path.
    """
    if path is None:
        return None
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise CLIError(f"{flag} {str(path)!r} exists and is not a directory.")
    _first_existing(target, flag)
    return target
