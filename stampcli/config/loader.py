"""campaign.yml, or the same keys as data -> :class:`Campaign`, with located errors.

:func:`load_campaign` reads a campaign file (YAML, with a guard against alias
bombs; a ``.env`` beside it), then hands the keys to the one path that
:func:`campaign_from_data` takes too: substitute ``${NAME}`` from the
environment (a missing variable is an error that names it), resolve relative
paths against the campaign's folder, validate, and turn every problem into one
line naming the file (or the data's source), the key path and, where YAML gives
it, the line, with a did-you-mean for a misspelt key. Provider URLs are parsed
by the model (:mod:`.provider_url`) so that adapters receive a checked
``ProviderURL``; a ``${NAME}`` inside a URL reaches the provider byte for byte.
The files a campaign mails or renders are confined to its folder and
``allow_paths:`` (see :mod:`stampcli.paths`).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import quote

import yaml
from pydantic import BaseModel, ValidationError

from stampcli import paths, redact
from stampcli.config.dkim import load_key
from stampcli.config.model import Campaign, UnsubscribeConfig
from stampcli.config.provider_url import _decode, _encode
from stampcli.errors import ConfigError

_ENV_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


Loc = tuple[int | str, ...]
"""A key path, as pydantic gives it: ``("providers", 0, "url")``."""

Where = Callable[[Loc], str]
"""The start of an error line for a key path: ``FILE:LINE``, ``FILE`` or the data's source."""

_MAX_DEPTH = 100  # lists and mappings inside each other; a campaign needs a handful
_TOO_DEEP = f"lists and mappings nested more than {_MAX_DEPTH} deep; a campaign is far flatter"


class _TooDeep(Exception):
    def __init__(self, loc: Loc) -> None:
        self.loc = loc


def _is_url(loc: Loc) -> bool:
    """``providers[N].url``: the value whose ``${NAME}`` parts are percent-encoded."""
    return len(loc) == 3 and loc[0] == "providers" and isinstance(loc[1], int) and loc[2] == "url"


def _substitute_env(
    value: object, env: Mapping[str, str], missing: list[tuple[str, Loc]], loc: Loc = ()
) -> Any:
    """``value`` with ``${NAME}`` replaced in every string, a new tree (the input is left as is).

    In a provider URL (``providers[N].url``), a ``${NAME}`` after the ``://`` stands for one
    part of the URL (a user, password, key, host, option value) and is put in
    percent-encoded, so that the URL parser, which decodes each part once,
    hands it to the provider exactly as set, ``%``, ``?``, ``#``, ``@``, ``:``
    and ``/`` included. A ``${NAME}`` before the ``://`` (a whole URL kept in
    one variable) is put in as it is: it is URL text, encoded by its author.
    Mapping keys are not substituted. A value is substituted once however often
    a YAML alias repeats it (``$${X}`` stays ``${X}``), and a substituted value
    stays text: it is never re-read as a YAML bool or number.
    """
    if isinstance(value, str):
        if "$" not in value:
            return value
        authority = value.find("://") + 3 if _is_url(loc) else 0

        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name = m.group(1)
            if name not in env:
                missing.append((name, loc))
                return ""
            found = env[name]
            redact.register(found)
            return _encode(found) if 3 <= authority <= m.start() else found

        return _ENV_RE.sub(sub, value)
    if len(loc) >= _MAX_DEPTH:
        raise _TooDeep(loc[:2])  # also ends a list or mapping that holds itself
    if isinstance(value, Mapping):
        return {
            k: _substitute_env(v, env, missing, (*loc, k if isinstance(k, str) else str(k)))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_substitute_env(v, env, missing, (*loc, i)) for i, v in enumerate(value)]
    return value


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
    except RecursionError:  # PyYAML composes nested lists and mappings recursively
        raise ConfigError(f"{file}: {_TOO_DEEP}") from None
    if root is None:
        raise ConfigError(f"{file}: the campaign file is empty")
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{file}: a campaign file is a mapping of keys (name:, from:, ...)")
    if _expanded_size(root, {}) > _MAX_NODES:
        raise ConfigError(
            f"{file}: the YAML expands to more than {_MAX_NODES:,} values "
            "(anchors and aliases nested too deep); a campaign file is far smaller"
        )
    try:
        data = yaml.SafeLoader(text).construct_document(root)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{file}: {_TOO_DEEP}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: a campaign file is a mapping of keys (name:, from:, ...)")

    def located(loc: Loc) -> str:
        line = _line_of(root, loc)
        return f"{file}:{line}" if line else str(file)

    return _build(data, base=file.parent, path=file.resolve(), env=env, environ=env, where=located)


def campaign_from_data(
    data: Mapping[str, Any],
    *,
    base_dir: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    source: str = "<data>",
) -> Campaign:
    """A campaign from the keys of a campaign.yml (a JSON body, say), checked as a file is.

    The same rules, messages and file confinement as :func:`load_campaign`:
    relative paths resolve against ``base_dir``, which stands for the campaign
    file's folder (the files it mails or renders must be inside it or an
    ``allow_paths:`` entry). ``${NAME}`` is taken from ``env`` only: without
    one, nothing is read from the process environment (data may come from a
    client that must not see the server's secrets) and each ``${NAME}`` is an
    error. The unsubscribe secret is read as the renderer reads it, from
    ``env`` or else the process environment. Errors are
    ``SOURCE: key.path: what is wrong``, one per line. ``Campaign.path`` is
    ``base_dir`` joined with the last part of ``source``; nothing is read there.
    ``data`` itself is not changed.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a campaign is a mapping of keys (name:, from:, ...)")
    base = Path(base_dir)
    if not base.is_dir():
        raise ConfigError(f"{source}: the campaign folder {base} is not a folder")
    note = "" if env is not None else " (campaign data is given no environment)"
    return _build(
        data,
        base=base,
        path=base.resolve() / (PurePath(source).name or "<data>"),
        env={} if env is None else env,
        environ=os.environ if env is None else env,
        where=lambda loc: source,
        env_note=note,
    )


def _build(
    data: Mapping[str, Any],
    *,
    base: Path,
    path: Path,
    env: Mapping[str, str],
    environ: Mapping[str, str],
    where: Where,
    env_note: str = "",
) -> Campaign:
    """The one way to a campaign, from a file or from data: ``${NAME}``, paths, model, files."""
    missing: list[tuple[str, Loc]] = []
    try:
        substituted: dict[str, Any] = _substitute_env(data, env, missing)
    except _TooDeep as exc:
        raise ConfigError(f"{where(exc.loc)}: {_fmt_loc(exc.loc)}: {_TOO_DEEP}") from None
    if missing:
        lines: list[str] = []
        for name, loc in missing:
            line = f"{where(loc)}: {_fmt_loc(loc)}: environment variable {name} is not set"
            if line + env_note not in lines:  # once, however often an alias repeats it
                lines.append(line + env_note)
        raise ConfigError("\n".join(lines))
    if "attachment_templates" in substituted:  # the loader's own key (see _resolve_paths)
        raise ConfigError(
            f"{where(('attachment_templates',))}: attachment_templates: not a campaign key; "
            "write a templated path such as invoices/{{ customer_id }}.pdf under attachments:"
        )
    substituted = _resolve_paths(substituted, base.resolve())
    substituted["path"] = path
    try:
        campaign = Campaign.model_validate(substituted)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            lines.append(f"{where(loc)}: {_fmt_loc(loc)}: {_describe(err)}")
        raise ConfigError("\n".join(lines)) from None
    # the token secret is registered now, not only when the renderer reads it, so
    # that _check_files refuses an attachment holding it
    secret_env = campaign.unsubscribe.secret_env if campaign.unsubscribe else None
    redact.register(environ.get(secret_env or UnsubscribeConfig().secret_env))
    if campaign.dkim is not None:
        # a key that does not parse is refused now, not at the first message; read
        # before the files are checked, so that an attachment holding it is refused too
        try:
            load_key(campaign.dkim, environ)
        except ConfigError as exc:
            raise ConfigError(f"{where(('dkim',))}: {exc}") from None
    _check_files(campaign, where)
    return campaign


def _is_template(value: str) -> bool:
    return "{{" in value or "{%" in value


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    def fix(v: object) -> object:
        # a NUL cannot be in a path: left as written for the file checks to refuse by name
        if isinstance(v, str) and v and "://" not in v and "\x00" not in v:
            return str((base / os.path.expanduser(v)).resolve())
        return v

    out = dict(data)
    for key in ("template", "text_template", "layout"):
        if key in out:
            out[key] = fix(out[key])
    # a key only the loader sets: refused by the model as unknown when written
    if isinstance(out.get("attachments"), list):
        # a templated entry names each recipient's own file; it is resolved per message
        templated = [v for v in out["attachments"] if isinstance(v, str) and _is_template(v)]
        if templated:
            out["attachment_templates"] = templated
            out["attachments"] = [v for v in out["attachments"] if v not in templated]
    for key in ("attachments", "allow_paths"):
        if isinstance(out.get(key), list):
            out[key] = [fix(v) for v in out[key]]
    if isinstance(out.get("images"), dict):
        out["images"] = {k: fix(v) for k, v in out["images"].items()}
    dkim = out.get("dkim")
    if isinstance(dkim, dict) and "key_file" in dkim:
        out["dkim"] = {**dkim, "key_file": fix(dkim["key_file"])}
    ab = out.get("ab")
    if isinstance(ab, dict) and isinstance(ab.get("variants"), list):
        variants = [
            {**v, "template": fix(v["template"])} if isinstance(v, dict) and "template" in v else v
            for v in ab["variants"]
        ]
        out["ab"] = {**ab, "variants": variants}
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
    return redact.holds_secret(data, _SECRET_SCAN_MIN)


def _check_files(campaign: Campaign, where: Where) -> None:
    """Every file the campaign reads exists; content files are confined and hold no secret.

    ``template``, ``text_template``, ``layout``, ``attachments`` and ``images``
    must be regular files inside the campaign's folder or an ``allow_paths:``
    entry (symlinks resolved), never under /proc, /sys or /dev and never a
    dotenv file; attachments and images must not contain a registered secret.
    """
    problems = []

    def report(loc: Loc, what: str) -> None:
        problems.append(redact.redact(f"{where(loc)}: {_fmt_loc(loc)}: {what}"))

    for i, allowed in enumerate(campaign.allow_paths):
        if not allowed.exists():
            report(("allow_paths", i), f"no such folder: {allowed}")
    roots = [campaign.base_dir, *campaign.allow_paths]
    folders = f"the campaign folder {campaign.base_dir}"
    if campaign.allow_paths:
        folders += " and allow_paths"
    content: list[tuple[tuple[int | str, ...], Path | None]] = [
        (("template",), campaign.template),
        (("text_template",), campaign.text_template),
        (("layout",), campaign.layout),
    ]
    if campaign.ab is not None:  # each A/B variant's own template, under the same rules
        content += [
            (("ab", "variants", i, "template"), v.template)
            for i, v in enumerate(campaign.ab.variants)
        ]
    mailed: list[tuple[tuple[int | str, ...], Path]]
    mailed = [(("attachments", i), p) for i, p in enumerate(campaign.attachments)]
    mailed += [(("images", k), p) for k, p in campaign.images.items()]
    for loc, p in [*content, *mailed]:
        why = None if p is None else paths.refusal(p, roots, where=folders)
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
