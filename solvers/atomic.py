"""The one atomic file writer: readers never see half a file, nothing is lost on a kill.

``atomic_write(path, write)`` calls ``write(tmp)`` on a temporary file next to ``path``
(same folder, so ``os.replace`` is atomic), gives it the permissions an ordinary
``open(path, "w")`` would have (``0o666 & ~umask``; ``mkstemp`` alone leaves ``0o600``),
then renames it over ``path``. The temporary file is removed on every exit path Python
controls; temporaries with this writer's prefix left behind by a killed process
(SIGKILL) are removed by the next write to the same destination once they are older
than an hour.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

STALE_SECONDS = 3600.0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _prefix(path: Path) -> str:
    return f".{path.name}."


def remove_stale_temporaries(path: str | os.PathLike, max_age: float = STALE_SECONDS) -> int:
    """Delete ``.<name>.*.tmp`` files next to ``path`` older than ``max_age`` seconds.

    Returns
    -------
    int
        How many were removed.
    """
    path = Path(path)
    removed = 0
    if not path.parent.is_dir():
        return 0
    now = time.time()
    for stale in path.parent.glob(f"{_prefix(path)}*.tmp"):
        try:
            if now - stale.stat().st_mtime > max_age:
                stale.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Write ``path`` atomically through ``write(tmp_path)``.

    Parameters
    ----------
    path : str or PathLike
        Destination; its folder must exist.
    write : callable
        Called once with the temporary file's path (a ``str``); it must write the whole
        content there (it may reopen the file by name).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_prefix(path), suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """:func:`atomic_write` of raw bytes."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
