"""campaign.yml -> :class:`Campaign`: YAML, ``${NAME}``, .env, located errors, file checks.

Loads a campaign file, substitutes ``${NAME}`` from the environment (a missing
variable is an error that names it), resolves relative paths against the
campaign file, and turns every validation problem into one line naming the
file, the key path and, where YAML gives it, the line. Provider URLs are
parsed here (scheme, credentials, host, options) so that adapters receive a
checked ``ProviderURL``: an unknown scheme or ``?option``, or an option value
the scheme does not take, is refused with a suggestion. The secrets inside
them are registered with :mod:`stampcli.redact`; a ``${NAME}`` inside a URL
reaches the provider byte for byte. The files a campaign mails or renders
are confined to its folder and ``allow_paths:`` (see :mod:`stampcli.paths`).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from pydantic import BaseModel, ValidationError

from stampcli import paths, redact
from stampcli.config.model import Campaign, UnsubscribeConfig
from stampcli.config.provider_url import _decode, _encode
from stampcli.errors import ConfigError

_ENV_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _url_nodes(root: yaml.MappingNode) -> set[int]:
    """The ids of the scalars at ``providers[*].url``, whose ``${NAME}`` values are encoded."""
    found: set[int] = set()
    for key, value in root.value:
        if key.value != "providers" or not isinstance(value, yaml.SequenceNode):
            continue
        for item in value.value:
            if isinstance(item, yaml.MappingNode):
                for k, v in item.value:
                    if k.value == "url" and isinstance(v, yaml.ScalarNode):
                        found.add(id(v))
    return found


def _substitute_env(
    node: yaml.Node,
    env: Mapping[str, str],
    missing: list[tuple[str, int]],
    urls: set[int] | None = None,
    seen: set[int] | None = None,
) -> None:
    """Replace ``${NAME}`` in every scalar of the composed YAML tree, in place.

    In a provider URL (``urls``), a ``${NAME}`` after the ``://`` stands for one
    part of the URL (a user, password, key, host, option value) and is put in
    percent-encoded, so that the URL parser, which decodes each part once,
    hands it to the provider exactly as set, ``%``, ``?``, ``#``, ``@``, ``:``
    and ``/`` included. A ``${NAME}`` before the ``://`` (a whole URL kept in
    one variable) is put in as it is: it is URL text, encoded by its author.
    ``seen`` keeps a node reached twice through a YAML alias from being
    substituted twice (``$${X}`` must stay ``${X}``).
    """
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        if isinstance(node.value, str) and "$" in node.value:
            authority = node.value.find("://") + 3 if urls and id(node) in urls else 0

            def sub(m: re.Match[str]) -> str:
                if m.group(0) == "$$":
                    return "$"
                name = m.group(1)
                if name not in env:
                    missing.append((name, node.start_mark.line + 1))
                    return ""
                value = env[name]
                redact.register(value)
                return _encode(value) if 3 <= authority <= m.start() else value

            replaced = _ENV_RE.sub(sub, node.value)
            if replaced != node.value:
                # a substituted value is plain text: never re-read as YAML bool/number
                node.value = replaced
                node.tag = "tag:yaml.org,2002:str"
    elif isinstance(node, yaml.SequenceNode):
        for child in node.value:
            _substitute_env(child, env, missing, urls, seen)
    elif isinstance(node, yaml.MappingNode):
        for _, child in node.value:
            _substitute_env(child, env, missing, urls, seen)


_MAX_NODES = 100_000


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values the tree holds once aliases are expanded (guards against YAML bombs)."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = _MAX_NODES + 1  # a cycle counts as too big
    size = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            size += _expanded_size(child, memo)
            if size > _MAX_NODES:
                break
    elif isinstance(node, yaml.MappingNode):
        for key, child in node.value:
            size += _expanded_size(key, memo) + _expanded_size(child, memo)
            if size > _MAX_NODES:
                break
    memo[id(node)] = size
    return size


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the key path ``loc`` in the composed YAML tree."""
    line = None if node is None else node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = None
            for key, value in node.value:
                if key.value == part:
                    found = (key, value)
                    break
            if found is None:
                return line
            line = found[0].start_mark.line + 1
            node = found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _aliases(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items() if n != "path"]


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Campaign
    for part in loc:
        if model is None or isinstance(part, int):
            continue
        fld = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        if fld is None:
            return None
        ann = fld.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        model = None
        for c in candidates:
            for sub in (c, *getattr(c, "__args__", ())):
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    model = sub
    return model


def _describe(err: Mapping[str, Any]) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        model = _model_at(loc[:-1])
        choices = _aliases(model) if model else []
        close = difflib.get_close_matches(key, choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        allowed = f"; allowed here: {', '.join(choices)}" if choices else ""
        return f"unknown key {key!r}{hint}{allowed}"
    if kind == "missing":
        return "this key is required"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return redact.redact(msg)


def _fmt_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def load_dotenv(path: Path) -> None:
    """Read ``KEY=VALUE`` lines from ``path`` (if it exists) into the environment.

    A ``.env`` file next to campaign.yml keeps secrets out of the campaign file
    and shell history; variables already set in the environment win. Every
    value is registered as a secret.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (FileNotFoundError, NotADirectoryError):
        return
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(f"{path}:{number}: expected NAME=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        redact.register(value)
        os.environ.setdefault(name, value)


def load_campaign(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Campaign:
    """Read, substitute, validate and resolve a campaign file.

    Raises :class:`ConfigError` whose message lists every problem, one per line,
    as ``FILE:LINE: key.path: what is wrong``.
    """
    file = Path(path)
    if env is None:
        load_dotenv(file.parent / ".env")
        env = os.environ
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such campaign file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not a text file (campaign files are UTF-8 YAML)") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read it ({exc.strerror})") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{file}{where}: not valid YAML: {problem}") from None
    if root is None:
        raise ConfigError(f"{file}: the campaign file is empty")
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{file}: a campaign file is a mapping of keys (name:, from:, ...)")
    if _expanded_size(root, {}) > _MAX_NODES:
        raise ConfigError(
            f"{file}: the YAML expands to more than {_MAX_NODES:,} values "
            "(anchors and aliases nested too deep); a campaign file is far smaller"
        )
    missing: list[tuple[str, int]] = []
    _substitute_env(root, env, missing, _url_nodes(root))
    if missing:
        lines = [f"{file}:{line}: environment variable {name} is not set" for name, line in missing]
        raise ConfigError("\n".join(lines))
    try:
        data = yaml.SafeLoader(text).construct_document(root)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: a campaign file is a mapping of keys (name:, from:, ...)")
    data = _resolve_paths(data, file.parent.resolve())
    data["path"] = file.resolve()
    try:
        campaign = Campaign.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = _line_of(root, loc)
            where = f"{file}:{line}" if line else str(file)
            lines.append(f"{where}: {_fmt_loc(loc)}: {_describe(err)}")
        raise ConfigError("\n".join(lines)) from None
    # the token secret is registered now, not only when the renderer reads it, so
    # that _check_files refuses an attachment holding it
    secret_env = campaign.unsubscribe.secret_env if campaign.unsubscribe else None
    redact.register(env.get(secret_env or UnsubscribeConfig().secret_env))
    _check_files(campaign, file, root)
    return campaign


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    def fix(v: object) -> object:
        if isinstance(v, str) and v and "://" not in v:
            return str((base / os.path.expanduser(v)).resolve())
        return v

    out = dict(data)
    for key in ("template", "text_template", "layout"):
        if key in out:
            out[key] = fix(out[key])
    for key in ("attachments", "allow_paths"):
        if isinstance(out.get(key), list):
            out[key] = [fix(v) for v in out[key]]
    if isinstance(out.get("images"), dict):
        out["images"] = {k: fix(v) for k, v in out["images"].items()}
    aud = out.get("audience")
    if isinstance(aud, dict) and "file" in aud:
        out["audience"] = {**aud, "file": fix(aud["file"])}
    provs = out.get("providers")
    if isinstance(provs, list):
        fixed = []
        for p in provs:
            if isinstance(p, dict) and isinstance(p.get("url"), str):
                url: str = p["url"]
                if url.lower().startswith("outbox://"):
                    # the folder is decoded once here and re-encoded, so that the parser's
                    # one decoding gives back the folder as written (or as ${NAME} held it)
                    folder, sep, query = url.split("://", 1)[1].partition("?")
                    resolved = str((base / _decode(folder)).resolve())
                    p = {**p, "url": f"outbox://{quote(resolved, errors='surrogateescape')}"}
                    p["url"] += sep + query
            fixed.append(p)
        out["providers"] = fixed
    return out


# Secrets shorter than this are not looked for inside attachments: a value of a few
# characters (a port, a region, "true", a short user name, all of which ${NAME} may
# register) turns up by chance in a PDF or an image of a few megabytes and would
# refuse a harmless file, while real keys and passwords are longer; at 8 bytes a
# chance match in 10 MB of random data is about one in 10^12.
_SECRET_SCAN_MIN = 8


def _holds_secret(data: bytes) -> bool:
    """True when ``data`` contains a registered secret (any of its registered forms)."""
    for secret in redact.known():
        if len(secret) >= _SECRET_SCAN_MIN and secret.encode("utf-8", "surrogateescape") in data:
            return True
    return False


def _check_files(campaign: Campaign, file: Path, root: yaml.Node) -> None:
    """Every file the campaign reads exists; content files are confined and hold no secret.

    ``template``, ``text_template``, ``layout``, ``attachments`` and ``images``
    must be regular files inside the campaign's folder or an ``allow_paths:``
    entry (symlinks resolved), never under /proc, /sys or /dev and never a
    dotenv file; attachments and images must not contain a registered secret.
    """
    problems = []

    def report(loc: tuple[int | str, ...], what: str) -> None:
        line = _line_of(root, loc)
        where = f"{file}:{line}" if line else str(file)
        problems.append(redact.redact(f"{where}: {_fmt_loc(loc)}: {what}"))

    for i, allowed in enumerate(campaign.allow_paths):
        if not allowed.exists():
            report(("allow_paths", i), f"no such folder: {allowed}")
    roots = [campaign.base_dir, *campaign.allow_paths]
    where = f"the campaign folder {campaign.base_dir}"
    if campaign.allow_paths:
        where += " and allow_paths"
    content: list[tuple[tuple[int | str, ...], Path | None]] = [
        (("template",), campaign.template),
        (("text_template",), campaign.text_template),
        (("layout",), campaign.layout),
    ]
    mailed: list[tuple[tuple[int | str, ...], Path]]
    mailed = [(("attachments", i), p) for i, p in enumerate(campaign.attachments)]
    mailed += [(("images", k), p) for k, p in campaign.images.items()]
    for loc, p in [*content, *mailed]:
        why = None if p is None else paths.refusal(p, roots, where=where)
        if why is not None:
            report(loc, why)
    # the list may live anywhere (an export from the CRM); it is read, never mailed
    aud = campaign.audience.file
    if aud is not None and not aud.is_file():
        report(("audience", "file"), f"no such file: {aud}")
    if problems:
        raise ConfigError("\n".join(problems))
    for loc, p in mailed:
        try:
            data = p.read_bytes()
        except OSError as exc:
            report(loc, f"cannot read {p}: {exc.strerror}")
            continue
        if _holds_secret(data):
            # which secret is not said: the message goes to terminals and CI logs
            report(
                loc,
                f"{p} contains the value of a secret (a ${{NAME}} or .env value, a "
                "provider key or the unsubscribe secret); stamp will not mail it",
            )
    if problems:
        raise ConfigError("\n".join(problems))
