"""A campaign as data a worker on another host can run: its keys and the files it reads.

:func:`pack` turns a loaded campaign into a definition (the campaign file's own
keys, ``${NAME}`` references left unresolved: secrets stay in each worker's
environment, never in the store) and a zip of every file it reads: the
template, text template and layout with the template-like files of their
folders (for ``{% include %}`` and linked stylesheets), the images and
attachments, and the audience file. Paths in the definition point into the
zip. :func:`unpack` writes the zip into a folder of this host's temporary
directory, once per digest, and loads the campaign from the definition there
with the worker's environment, checked exactly as a campaign file is.

The ``store:`` key is dropped (a queued campaign is sent from the store that
queues it) and so is ``allow_paths:`` (every file is inside the bundle).
``outbox://`` folders are made absolute, as they are on the queueing host.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from stampcli.config import Campaign
from stampcli.config.loader import campaign_from_data
from stampcli.errors import ConfigError, InputError
from stampcli.records import QueuedDefinition

FORMAT = 1  # the definition's own version: a worker refuses one it does not know
# template-like files of a template's folder that go along (includes, stylesheets)
TEMPLATE_SUFFIXES = frozenset(
    {".html", ".htm", ".md", ".markdown", ".txt", ".text", ".css", ".j2", ".jinja", ".jinja2",
     ".xml", ".mjml", ".tmpl", ".tpl"}
)  # fmt: skip
# folders of a template's folder that are never templates (sent mail, dependencies)
SKIP_DIRS = frozenset({"outbox", "outbox-dry-run", "node_modules", "__pycache__"})
MAX_FOLDER_FILES = 2_000  # template-like files taken from one folder at most
MAX_BUNDLE = 512 << 20  # bytes of files a queued campaign may carry
_ZIP_TIME = (2000, 1, 1, 0, 0, 0)  # fixed, so that the same files give the same digest


@dataclass(frozen=True, slots=True)
class Packed:
    """A campaign ready to be queued."""

    name: str
    definition: str  # JSON
    bundle: bytes  # zip
    digest: str  # sha256 of both
    files: int

    @property
    def size(self) -> int:
        return len(self.bundle)


def _raw_keys(campaign: Campaign) -> dict[str, Any]:
    """The campaign file's keys as written (``${NAME}`` not substituted)."""
    try:
        data = yaml.safe_load(campaign.path.read_text(encoding="utf-8-sig"))
    except (OSError, yaml.YAMLError) as exc:  # it loaded a moment ago
        raise ConfigError(f"{campaign.path}: cannot read it again ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{campaign.path}: a campaign file is a mapping of keys")
    return data


def _template_files(folder: Path) -> Iterator[Path]:
    """The template-like files under ``folder`` (dot files and SKIP_DIRS left out)."""
    count = 0
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
        for name in sorted(names):
            path = Path(root) / name
            if name.startswith(".") or path.suffix.lower() not in TEMPLATE_SUFFIXES:
                continue
            if not path.is_file():
                continue
            count += 1
            if count > MAX_FOLDER_FILES:
                return
            yield path


class _Files:
    """The zip's members: template folders keep their layout, other files go one each."""

    def __init__(self, folders: list[Path]) -> None:
        self.folders = folders
        self.members: dict[str, Path] = {}
        for i, folder in enumerate(folders):
            for path in _template_files(folder):
                self.members[f"t{i}/{path.relative_to(folder).as_posix()}"] = path

    def name_of(self, path: Path) -> str:
        """The member ``path`` is stored as (added if it is not yet)."""
        for i, folder in enumerate(self.folders):
            if path.is_relative_to(folder):
                member = f"t{i}/{path.relative_to(folder).as_posix()}"
                self.members[member] = path
                return member
        for member, known in self.members.items():
            if known == path:
                return member
        member = f"f{len(self.members)}/{path.name}"
        self.members[member] = path
        return member


def pack(campaign: Campaign) -> Packed:
    """The definition and files of ``campaign`` (a loaded campaign file)."""
    data = _raw_keys(campaign)
    data.pop("store", None)
    data.pop("allow_paths", None)
    folders: list[Path] = []
    for p in (campaign.template, campaign.layout, campaign.text_template):
        if p is not None and p.parent not in folders:
            folders.append(p.parent)
    files = _Files(folders)
    data["template"] = files.name_of(campaign.template)
    if campaign.text_template is not None:
        data["text_template"] = files.name_of(campaign.text_template)
    if campaign.layout is not None:
        data["layout"] = files.name_of(campaign.layout)
    if campaign.attachments:
        data["attachments"] = [files.name_of(p) for p in campaign.attachments]
    if campaign.images:
        data["images"] = {k: files.name_of(p) for k, p in campaign.images.items()}
    mtimes: dict[str, int] = {}
    if campaign.audience.file is not None and isinstance(data.get("audience"), dict):
        member = files.name_of(campaign.audience.file)
        data["audience"] = {**data["audience"], "file": member}
        # kept, so that every worker sees the list as the same file and plans it once
        mtimes[member] = campaign.audience.file.stat().st_mtime_ns
    raw_providers = data.get("providers")
    if isinstance(raw_providers, list):
        for i, (raw, loaded) in enumerate(zip(raw_providers, campaign.providers, strict=False)):
            url = raw.get("url") if isinstance(raw, dict) else None
            if isinstance(url, str) and url.lower().startswith("outbox://") and "${" not in url:
                raw_providers[i] = {**raw, "url": loaded.url}  # made absolute by the loader
    definition = json.dumps(
        {"format": FORMAT, "source": campaign.path.name, "data": data, "mtimes": mtimes},
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )
    bundle = _zip(files.members)
    digest = hashlib.sha256(definition.encode() + b"\0" + bundle).hexdigest()
    return Packed(campaign.name, definition, bundle, digest, len(files.members))


def _zip(members: Mapping[str, Path]) -> bytes:
    out = io.BytesIO()
    total = 0
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for member in sorted(members):
            path = members[member]
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise InputError(f"{path}: cannot read it to queue it ({exc.strerror})") from None
            total += len(data)
            if total > MAX_BUNDLE:
                raise InputError(
                    f"the files of this campaign pass {MAX_BUNDLE >> 20} MB; import a large "
                    "list (stamp import) and use audience.list instead of audience.file"
                )
            info = zipfile.ZipInfo(member, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return out.getvalue()


# --------------------------------------------------------------------------- unpack


def cache_root() -> Path:
    """Where this host's workers keep unpacked campaigns (one folder per user)."""
    return Path(tempfile.gettempdir()) / f"stamp-queue-{os.getuid()}"


def _member_path(folder: Path, name: str) -> Path:
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise InputError(f"queued campaign: the file name {name!r} leads out of its folder")
    return folder.joinpath(*pure.parts)


def _extract(queued: QueuedDefinition, mtimes: Mapping[str, int], root: Path) -> Path:
    """The folder holding the campaign's files, written on first use (atomically)."""
    folder = root / queued.digest[:40]
    if (folder / ".complete").exists():
        return folder
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root, prefix=".unpack-"))
    try:
        with zipfile.ZipFile(io.BytesIO(queued.bundle)) as zf:
            for info in zf.infolist():
                target = _member_path(work, info.filename)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(info))
        for member, ns in mtimes.items():
            os.utime(_member_path(work, member), ns=(ns, ns))
        (work / ".complete").write_text(queued.digest, encoding="utf-8")
        try:
            work.rename(folder)
        except OSError:  # another worker of this host was quicker: use its folder
            if not (folder / ".complete").exists():
                raise
    except zipfile.BadZipFile as exc:
        raise InputError(
            f"queued campaign {queued.name!r}: its files are damaged ({exc})"
        ) from None
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return folder


def unpack(
    queued: QueuedDefinition,
    *,
    env: Mapping[str, str] | None = None,
    root: Path | None = None,
) -> Campaign:
    """The queued campaign, loaded from its files with ``env`` (default: this process's)."""
    try:
        doc = json.loads(queued.definition)
    except ValueError as exc:
        raise InputError(
            f"queued campaign {queued.name!r}: its definition is damaged ({exc})"
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(
            f"queued campaign {queued.name!r} was queued by another version of stamp "
            f"(definition format {doc.get('format') if isinstance(doc, dict) else '?'}); "
            "queue it again with this one"
        )
    folder = _extract(queued, doc.get("mtimes") or {}, root or cache_root())
    name = queued.name.replace("/", "_")  # the source's last part names Campaign.path
    source = f"queued campaign {name!r} ({doc.get('source') or 'campaign.yml'})"
    return campaign_from_data(
        doc["data"],
        base_dir=folder,
        env=os.environ if env is None else env,
        source=source,
    )
