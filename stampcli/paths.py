"""Which files a campaign may read: inside its folders, regular, never system or dotenv files.

One rule says whether a path is inside a folder, for the template loader
(``{% include %}`` and ``{% extends %}``) and for the campaign's own files
(``template``, ``layout``, ``attachments``, ``images``) alike: the path's real
location, symlinks resolved, is the folder itself or under it. A symlink in
the folder that points elsewhere is therefore outside.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

# Never read, whatever allow_paths says: kernel and device files (/proc/self/environ
# holds the environment, /dev/zero never ends, /dev/stdin is the terminal).
SYSTEM_ROOTS = ("/proc", "/sys", "/dev")


def inside(path: str | os.PathLike[str], roots: Iterable[str | os.PathLike[str]]) -> bool:
    """True when the real path of ``path`` is one of ``roots`` or under one of them."""
    real = os.path.realpath(path)
    for root in roots:
        r = os.path.realpath(root)
        if real == r or real.startswith(r.rstrip(os.sep) + os.sep):
            return True
    return False


def is_dotenv(name: str) -> bool:
    """``.env``, ``.env.local``, ``prod.env``: files that hold secrets, never mail content."""
    return name == ".env" or name.startswith(".env.") or name.endswith(".env")


def refusal(path: Path, roots: Iterable[Path], *, where: str) -> str | None:
    """Why ``path`` may not be read as campaign content, or None when it may.

    ``roots`` are the folders (or single files) content may come from; ``where``
    names them in the message (``the campaign folder /srv/news``).
    """
    real = Path(os.path.realpath(path))
    if inside(real, SYSTEM_ROOTS):
        return f"{path} is a system file; stamp never reads files under /proc, /sys or /dev"
    if not inside(real, roots):
        return (
            f"{path} is outside {where}; list its folder under allow_paths: to use files from there"
        )
    try:
        mode = real.stat().st_mode
    except FileNotFoundError:
        return f"no such file: {path}"
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    if not stat.S_ISREG(mode):
        return f"{path} is not a regular file (a folder, FIFO, socket or device)"
    if is_dotenv(real.name) or is_dotenv(path.name):
        return f"{path} is a dotenv file; it holds secrets and is never mailed"
    return None
