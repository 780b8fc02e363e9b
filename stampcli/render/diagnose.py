"""Where a template went wrong and what its author probably meant.

A rendering error names the template file and line it happened at (also inside
an include or a macro: the innermost template frame of the traceback), and an
undefined name or attribute comes with the nearest name that does exist: a
column, a campaign variable, or a key of the object whose attribute was asked
for ("did you mean 'summary'?"). A missing include is told apart from one
outside the template folders.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

_UNDEFINED = re.compile(r"'([^']+)' is undefined|has no attribute '([^']+)'")
_TEMPLATE_SUFFIXES = (".html", ".htm", ".md", ".markdown", ".txt", ".j2", ".jinja")


def undefined_name(message: str) -> tuple[str, bool]:
    """The missing name of a Jinja ``UndefinedError`` text, and whether it is an attribute."""
    m = _UNDEFINED.search(message)
    if m is None:
        return message, False
    if m.group(1) is not None:
        return m.group(1), False
    return m.group(2), True


def location(exc: BaseException) -> str:
    """``file:line`` of the innermost template frame of a rendering error, or ''."""
    tb = exc.__traceback__
    where = ""
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if not name.endswith(".py") and not name.startswith("<"):
            where = f"{name}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def attribute_names(values: Iterable[Any], depth: int = 3) -> set[str]:
    """Every key of the mappings in ``values`` and below (lists of dicts included).

    Jinja's traceback of a missing attribute keeps only template frames, not the
    object asked, so the candidates for ``item.sumary`` are the keys the data has
    anywhere: campaign variables and the recipient's (JSON) fields.
    """
    out: set[str] = set()
    pending = [(v, 0) for v in values]
    while pending:
        value, level = pending.pop()
        if level >= depth:
            continue
        if isinstance(value, Mapping):
            out.update(str(k) for k in value)
            pending.extend((v, level + 1) for v in value.values())
        elif isinstance(value, (list, tuple)):
            pending.extend((v, level + 1) for v in value[:50])
    return out


def nearest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``name`` (case-insensitive), or None when none is close."""
    pool = [c for c in dict.fromkeys(candidates) if c and c != name]
    if not pool:
        return None
    lowered = {c.lower(): c for c in pool}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'summary'?)`` or ''."""
    match = nearest(name, candidates)
    return f" (did you mean {match!r}?)" if match else ""


def columns_hint(name: str, columns: Sequence[str], variables: Sequence[str] = ()) -> str:
    """``the columns are: first_name, plan (did you mean 'plan'?)`` for a missing ``name``."""
    hint = did_you_mean(name, [*columns, *variables])
    if not columns:
        return f"the list has no columns besides the address{hint}"
    return f"the columns are: {', '.join(columns)}{hint}"


def template_files(folders: Iterable[Path]) -> list[str]:
    """Names (relative to their folder) of the template files under ``folders``."""
    out: list[str] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix.lower() in _TEMPLATE_SUFFIXES:
                out.append(path.relative_to(folder).as_posix())
    return out


def outside_folders(name: str) -> bool:
    """Whether an include name points out of the template folders (``..``, absolute)."""
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":")


def include_line(source: str, name: str) -> int | None:
    """The first line of ``source`` that names ``name`` in quotes, for a missing include."""
    for number, line in enumerate(source.splitlines(), start=1):
        if f"'{name}'" in line or f'"{name}"' in line:
            return number
    return None


def missing_include(
    user: str, name: str, folders: Sequence[Path], source: str | None = None
) -> str:
    """The message for a template that includes (imports, extends) a file that isn't there."""
    line = include_line(source, name) if source is not None else None
    where = f"{user}:{line}" if line else user
    places = ", ".join(str(f) for f in folders)
    if outside_folders(name):
        return (
            f"{where}: the template uses {name!r}, which is outside the template folder "
            f"{places}: templates can "
            "only use files from their own folder"
        )
    hint = did_you_mean(name, template_files(folders))
    return f"{where}: the template uses {name!r}, which does not exist in {places}{hint}"
