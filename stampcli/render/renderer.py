"""The Renderer: a campaign and one contact in, the exact message bytes out.

Long on purpose: the compile steps and the per-message paths (fast and slow,
JSON and MIME) share one campaign's compiled templates and caches; split, each
half would need the other's private state. What stands alone is already out
(environment, headers, mime, skeleton_cache, plain_templates, checks).

Everything that is the same for every recipient is done once, in the
constructor: templates compiled (syntax errors name the file and line),
attachments and inline images read and base64-encoded, the unsubscribe secret
checked, the content hash computed. :meth:`Renderer.render` then only renders
the recipient's values, inlines CSS, derives the text part (both cached per
template layout, see :mod:`stampcli.render.skeleton_cache`) and joins the MIME parts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from jinja2 import (
    Template,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    meta,
    nodes,
)
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from markupsafe import Markup

from stampcli import paths, redact
from stampcli.audience.columns import field_id
from stampcli.compliance.policy import unsubscribe_secret
from stampcli.compliance.tokens import DEFAULT_SECRET_ENV, MIN_SECRET_LEN, make_token
from stampcli.compliance.tracking_tokens import TrackingSigner
from stampcli.config import Campaign
from stampcli.errors import ConfigError, RecipientError, StampError, TemplateError
from stampcli.render import headers as hdr
from stampcli.render import markdown, mime, textpart
from stampcli.render.diagnose import (
    attribute_names,
    columns_hint,
    did_you_mean,
    missing_include,
    undefined_name,
)
from stampcli.render.diagnose import location as _location
from stampcli.render.environment import (
    AUTOESCAPE_EXTENSIONS,
    BUILTIN_LAYOUT,
    BUILTIN_LAYOUT_NAME,
    build_environment,
)
from stampcli.render.inline import Inliner
from stampcli.render.message import Attachment, Message, MessageCodec
from stampcli.render.plain_templates import MISSING, MarkedBody, Piece, lookup, simple_pieces
from stampcli.render.skeleton_cache import (
    MARK_CLOSE,
    MARK_OPEN,
    BodyCache,
    Layout,
    Stats,
    counting_mark,
    parse_pieces,
    unmarked,
)
from stampcli.render.tracking import Tracker
from stampcli.sandbox import Budget, LimitedSandbox, LimitExceeded

# suffixes of templates that are the text of a text/plain message (``format: text``)
TEXT_SUFFIXES = (".txt", ".text", ".txt.j2", ".txt.jinja")
# what a template that captures its own output uses (a {% set %} block, a macro, a
# {% filter %}, super()): such a render with markers differs from one without
_CAPTURING = (nodes.Macro, nodes.CallBlock, nodes.FilterBlock, nodes.AssignBlock)

# Headers stamp writes itself; a campaign's custom ``headers:`` cannot replace them.
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "MIME-Version",
        "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Content-ID",
        "List-Unsubscribe", "List-Unsubscribe-Post", "Reply-To", "Return-Path", "Received",
        "DKIM-Signature", "Sender",
    )
)  # fmt: skip
RESERVED_VARIABLES = ("email", "campaign", "unsubscribe_url", "unsubscribe_token", "subject")
_SLUG = re.compile(r"[^a-z0-9]+")
# the fast path's back-off (Renderer._try_fast): refusals in a row before it is
# skipped, and the most messages skipped before it is tried again
REFUSALS = 16
BACKOFF_MAX = 256
_FILE_CACHE_BYTES = 64 << 20  # per-recipient attachment files kept read in memory
# An address hdr.ascii_addr_spec and hdr.address leave unchanged: dot-atom local part,
# lower-case ASCII domain.
_SIMPLE_ADDR = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[a-z0-9-]+(?:\.[a-z0-9-]+)*"
)


def template_format(campaign: Campaign) -> str:
    """``html``, ``markdown`` or ``text``: the campaign's ``format:``, else by the suffix."""
    if campaign.format is not None:
        return campaign.format
    name = campaign.template.name.lower()
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    return "markdown" if markdown.is_markdown(campaign.template) else "html"


class MissingAttachment(RecipientError):
    """A recipient's own attachment (a templated ``attachments:`` path) cannot be sent."""

    def __init__(self, message: str, source: str) -> None:
        super().__init__(message)
        self.source = source  # the attachments: entry as written


class MissingVariable(RecipientError):
    """A template uses a variable (or an attribute) this recipient does not have."""

    def __init__(
        self,
        message: str,
        variable: str,
        columns: tuple[str, ...] = (),
        *,
        where: str = "",
        attribute: bool = False,
        hint: str = "",
    ) -> None:
        super().__init__(message)
        self.variable = variable
        self.columns = columns  # the names this recipient's columns have in templates
        self.where = where  # file:line of the template that asked for it, or ''
        self.attribute = attribute  # ``item.sumary``, not a top-level name
        self.hint = hint  # " (did you mean 'summary'?)" or ''


def template_names(keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(name, column) for the columns whose header is not already its template name.

    Templates see each column also by the name segments use (``First Name`` ->
    ``first_name``, :func:`stampcli.audience.columns.field_id`); a column whose
    header already is a name keeps it, and of two headers with the same name the
    first wins, as in segments.
    """
    taken = set(keys)
    out = []
    for key in keys:
        name = field_id(key)
        if name and name not in taken:
            taken.add(name)
            out.append((name, key))
    return tuple(out)


class _Field:
    """A small text template from campaign.yml (subject, from name, a header, a URL)."""

    def __init__(
        self, env: LimitedSandbox, key: str, source: str, origin: Path, limit: int
    ) -> None:
        self.key = key
        self.source = source
        self.static = "{" not in source
        self._budget = env.budget
        self._limit = limit
        self._what = f"the {key} template's output"
        # A template made only of text and ``{{ name }}`` outputs (most subjects and URLs)
        # is rendered here without Jinja: in a non-escaping environment without
        # ``finalize``, Jinja's code for it is ``str(value)`` of each output and the text
        # (see stampcli.render.plain_templates).
        self._pieces: tuple[Piece, ...] | None = None
        self._globals = env.globals
        try:
            self.template: Template | None = None if self.static else env.from_string(source)
            if self.static:
                self.names: set[str] = set()
            else:
                ast = env.parse(source)
                self.names = meta.find_undeclared_variables(ast)
                if not env.autoescape and env.finalize is None:
                    self._pieces = simple_pieces(ast, env.filters)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"{origin}: {key}: template syntax error: {exc.message}") from None

    def render(self, ctx: Mapping[str, Any]) -> str:
        if self.template is None:
            return self.source
        if self._pieces is not None:
            out = []
            for piece in self._pieces:
                if isinstance(piece, str):
                    out.append(piece)
                    continue
                value = lookup(ctx, piece, self._globals)
                if value is MISSING:  # Jinja raises the undefined-variable error
                    return self._jinja(ctx)
                out.append(str(value))
            return "".join(out)
        return self._jinja(ctx)

    def _jinja(self, ctx: Mapping[str, Any]) -> str:
        assert self.template is not None
        budget = self._budget
        budget.limit = self._limit
        budget.what = self._what
        return self.template.render(ctx)


class Renderer:
    """Renders one campaign's messages; build once, call :meth:`render` per recipient."""

    content_hash: str

    def __init__(
        self,
        campaign: Campaign,
        env: Mapping[str, str] | None = None,
        *,
        clock: Callable[[], float] | None = None,
        fast: bool = True,
        raw: bool = True,
        redactor: redact.Redactor | None = None,
    ) -> None:
        self.campaign = campaign
        # where the unsubscribe secret is registered and error texts are redacted: the
        # process's registry unless a server gives this campaign its own
        self._redactor = redact.DEFAULT if redactor is None else redactor
        # False: messages carry only fields (``Message.raw`` is empty), for sends through
        # providers that build the MIME themselves; saves a third of the rendering. Those
        # providers all take JSON, so the HTML and text then also come as JSON literals
        # (Message.html_json), the HTML's built from escapes cached per template.
        self.raw = raw
        self._environ = os.environ if env is None else env
        self._clock = clock or time.time
        self._fast = fast
        self.format = template_format(campaign)
        self.is_markdown = self.format == "markdown"
        self.is_text = self.format == "text"
        if self.is_text:
            self._refuse_html_only_keys()
        # Each step reads what the ones before it set.
        self._build_environments()
        self._compile_bodies()
        self._compile_headers()
        self._compile_unsubscribe()
        self._compile_tracking()
        self._read_files()
        self._check_sources()
        self._prepare_caches()

    # ------------------------------------------------------------------ construction steps

    def _refuse_html_only_keys(self) -> None:
        """A text template has no HTML for a text template, layout or images to go with."""
        campaign = self.campaign
        for key, given in (
            ("text_template", campaign.text_template),
            ("layout", campaign.layout),
            ("images", campaign.images),
        ):
            if given:
                raise ConfigError(
                    f"{campaign.path}: {key}: the template {campaign.template.name} is a text "
                    "template (a text/plain message, see format:), which has no "
                    f"HTML for {key} to go with; remove {key} or use an HTML template"
                )

    def _build_environments(self) -> None:
        """The template folders, the per-message budget and the three Jinja environments."""
        campaign = self.campaign
        template_path = campaign.template
        limits = campaign.limits
        # one budget for every template of a message: started per recipient, its
        # limit set before each template (the body's or a header's)
        self._budget = budget = Budget(limits.body, limits.seconds)
        self._body_limit = limits.body
        folders = [template_path.parent]
        if campaign.layout is not None and campaign.layout.parent not in folders:
            folders.append(campaign.layout.parent)
        if campaign.text_template is not None and campaign.text_template.parent not in folders:
            folders.append(campaign.text_template.parent)
        self.folders = folders
        mark, self._marks = counting_mark()
        # ``format: html`` (or markdown) on a file whose suffix is not escaped by default
        # (a .txt): subscriber data in HTML is escaped all the same
        name = template_path.name.lower()
        escape = (
            True
            if campaign.format in ("html", "markdown")
            and not any(name.endswith("." + ext) for ext in AUTOESCAPE_EXTENSIONS)
            else None
        )
        self._html_env = build_environment(folders, autoescape=escape, budget=budget)
        self._marked_env = build_environment(
            folders, autoescape=escape, finalize=mark, budget=budget
        )
        self._text_env = build_environment(folders, autoescape=False, budget=budget)
        self.inliner = Inliner(folders)

    def _compile_bodies(self) -> None:
        """The body template (plain and marked), the Markdown layout, the text template."""
        campaign = self.campaign
        template_path = campaign.template
        # a text template is rendered as written, without escaping
        self._body = self._load(self._text_env if self.is_text else self._html_env, template_path)
        self._body_marked = self._load(self._marked_env, template_path)
        # a body of only text and {{ name }}: its values are read without Jinja
        self._plain_body = (
            None
            if self.is_markdown or self.is_text or not self._fast
            else self._plain_body_of(template_path)
        )
        self._layout: Template | None = None
        self._layout_marked: Template | None = None
        if self.is_markdown:
            layout_path = campaign.layout
            if layout_path is not None:
                self._layout = self._load(self._html_env, layout_path)
                self._layout_marked = self._load(self._marked_env, layout_path)
            else:
                self._layout = self._html_env.get_template(BUILTIN_LAYOUT_NAME)
                self._layout_marked = self._marked_env.get_template(BUILTIN_LAYOUT_NAME)
        self._text: Template | None = None
        if campaign.text_template is not None:
            self._text = self._load(self._text_env, campaign.text_template)

    def _compile_headers(self) -> None:
        """From, Reply-To, Subject and custom header templates; the headers that never
        change (List-Id, Precedence, Feedback-ID), encoded once."""
        campaign = self.campaign
        origin = campaign.path
        cap = campaign.limits.header
        from_name, from_addr = parseaddr(campaign.from_)
        self.sender = hdr.ascii_addr_spec(from_addr) if "@" in from_addr else from_addr
        self.sender_domain = self.sender.rpartition("@")[2]
        self._from_name = _Field(self._text_env, "from", from_name, origin, cap)
        self._reply_to: tuple[_Field, str] | None = None
        if campaign.reply_to:
            rname, raddr = parseaddr(campaign.reply_to)
            self._reply_to = (_Field(self._text_env, "reply_to", rname, origin, cap), raddr)
        self._subject = _Field(self._text_env, "subject", campaign.subject, origin, cap)
        self._to = (
            None if campaign.to is None else _Field(self._text_env, "to", campaign.to, origin, cap)
        )
        self._copies = [
            (header, _Field(self._text_env, f"{key}[{i}]", source, origin, cap))
            for header, key, sources in (("Cc", "cc", campaign.cc), ("Bcc", "bcc", campaign.bcc))
            for i, source in enumerate(sources)
        ]
        self._headers: list[tuple[str, _Field]] = []
        for name, value in campaign.headers.items():
            if name.lower() in RESERVED_HEADERS:
                raise ConfigError(
                    f"{origin}: headers.{name}: stamp writes the {name} header itself; "
                    "remove it from headers:"
                )
            self._headers.append(
                (name, _Field(self._text_env, f"headers.{name}", value, origin, cap))
            )
        custom = {n.lower() for n, _ in self._headers}
        self._static_headers: dict[str, str] = {}
        if not campaign.transactional:
            if "list-id" not in custom:
                self._static_headers["List-Id"] = self._list_id()
            if "precedence" not in custom:
                self._static_headers["Precedence"] = "bulk"
        if campaign.feedback_id and "feedback-id" not in custom:
            if "{" in campaign.feedback_id:
                raise ConfigError(
                    f"{origin}: feedback_id: Feedback-ID must be the same for every recipient "
                    "(Gmail aggregates complaints by it); remove the template"
                )
            hdr.check_value("Feedback-ID", campaign.feedback_id)
            self._static_headers["Feedback-ID"] = campaign.feedback_id
        # what is the same in every message is encoded once
        self._static_lines = {
            name: hdr.unstructured(name, value) for name, value in self._static_headers.items()
        }
        self._static_from = (
            hdr.address(self._from_name.source.strip(), self.sender, "From")
            if self._from_name.static
            else None
        )

    def _compile_unsubscribe(self) -> None:
        """The unsubscribe URL and mailto templates, and the token secret where one is
        set (checked by :func:`compliance.policy.unsubscribe_secret`, as a send checks it)."""
        campaign = self.campaign
        origin = campaign.path
        cap = campaign.limits.header
        unsub = campaign.unsubscribe
        self._unsub_url = (
            _Field(self._text_env, "unsubscribe.url", unsub.url, origin, cap)
            if unsub and unsub.url
            else None
        )
        self._unsub_mailto = (
            _Field(self._text_env, "unsubscribe.mailto", unsub.mailto, origin, cap)
            if unsub and unsub.mailto
            else None
        )
        self._secret = unsubscribe_secret(campaign, self._environ, used_by=self._token_user())
        if self._secret is not None:
            self._redactor.register(self._secret)

    def _compile_tracking(self) -> None:
        """Own open/click tracking (``tracking.own``): the rules and the token signer,
        keyed from the unsubscribe secret, which ``stamp serve`` also holds."""
        campaign = self.campaign
        config = campaign.tracking
        self.tracker: Tracker | None = None
        # (message token, unsubscribe address) of the message being rendered
        self._track: tuple[str, str | None] | None = None
        if not config.own or not (config.own_opens or config.own_clicks):
            return
        if self.is_text:
            raise ConfigError(
                f"{campaign.path}: tracking.own: the template {campaign.template.name} is a "
                "text template (a text/plain message): it has no links to rewrite and no "
                "place for an open pixel; remove tracking.own or use an HTML template"
            )
        unsub = campaign.unsubscribe
        secret_env = unsub.secret_env if unsub else DEFAULT_SECRET_ENV
        secret = self._environ.get(secret_env, "")
        if len(secret) < MIN_SECRET_LEN:
            state = "is not set" if not secret else f"is shorter than {MIN_SECRET_LEN} characters"
            raise ConfigError(
                f"{campaign.path}: tracking.own signs its links with the secret in the "
                f"environment variable {secret_env} (unsubscribe.secret_env), but {secret_env} "
                f"{state}. Set it to a long random value (the same one `stamp serve` gets) and "
                "keep it for the whole campaign."
            )
        self._redactor.register(secret)
        signer = TrackingSigner(secret, campaign.name, config.expire_after)
        self.tracker = Tracker(config, signer, unsub.url if unsub else None)

    def _token_user(self) -> str | None:
        """What uses ``{{ unsubscribe_token }}``: a key of campaign.yml or the template, or None."""
        for fld in (self._unsub_url, self._unsub_mailto):
            if fld is not None and "unsubscribe_token" in fld.names:
                return fld.key
        if "unsubscribe_token" in self._body_names():
            return f"the template {self.campaign.template.name}"
        return None

    def _read_files(self) -> None:
        """Attachments and inline images, read and MIME-encoded once."""
        self.attachments: tuple[Attachment, ...] = tuple(self._files())
        self._inline_parts = [mime.attachment_part(a) for a in self.attachments if a.inline]
        self._attachment_parts = [mime.attachment_part(a) for a in self.attachments if not a.inline]
        c = self.campaign
        self._own_files = [
            _Field(self._text_env, "attachments", source, c.path, c.limits.header)
            for source in c.attachment_templates
        ]
        # recently read per-recipient files with their MIME parts ("brochure-{{ country }}
        # .pdf" names a few files many times); bounded, invoices are one file each
        self._file_cache: dict[Path, tuple[Attachment, bytes]] = {}
        self._file_cache_bytes = 0

    def _recipient_files(
        self, ctx: Mapping[str, Any], key: str
    ) -> tuple[tuple[Attachment, ...], list[bytes]]:
        """This recipient's own attachments (templated ``attachments:`` entries) and parts.

        A rendered path is confined like every campaign file (the campaign folder
        and ``allow_paths:``); an empty one means no file for this recipient; a
        missing or refused file is this recipient's error only.
        """
        c = self.campaign
        roots = [c.base_dir, *c.allow_paths]
        found: list[Attachment] = []
        parts: list[bytes] = []
        for fld in self._own_files:
            rel = fld.render(ctx).strip()
            if not rel:
                continue
            path = Path(os.path.abspath(c.base_dir / os.path.expanduser(rel)))
            cached = self._file_cache.get(path)
            if cached is None:
                cached = self._read_own(path, fld.source, roots, key)
            found.append(cached[0])
            parts.append(cached[1])
        return tuple(found), parts

    def _read_own(
        self, path: Path, source: str, roots: list[Path], key: str
    ) -> tuple[Attachment, bytes]:
        where = "the campaign folder" + (" and allow_paths" if self.campaign.allow_paths else "")
        why = paths.refusal(path, roots, where=where)
        data = b""
        if why is None:
            try:
                data = path.read_bytes()
            except OSError as exc:
                why = f"cannot read {path}: {exc.strerror}"
        if why is None and redact.holds_secret(data):
            why = f"{path} contains the value of a secret; stamp will not mail it"
        if why is not None:
            raise MissingAttachment(
                f"attachments: {source!r} for {key}: {self._redactor.redact(why)}", source
            )
        att = Attachment(path.name, mime.guess_type(path.name), data)
        entry = (att, mime.attachment_part(att))
        if len(data) <= _FILE_CACHE_BYTES // 8:
            if self._file_cache_bytes + len(data) > _FILE_CACHE_BYTES:
                self._file_cache.clear()
                self._file_cache_bytes = 0
            self._file_cache[path] = entry
            self._file_cache_bytes += len(data)
        return entry

    def _check_sources(self) -> None:
        """The content hash; every template source within limits.body; whether a marked
        render is the plain one with markers added."""
        self.content_hash = self._hash()
        sources = self._sources()
        limit = self.campaign.limits.body
        for name, source in sources.items():
            if len(source) > limit:
                raise TemplateError(
                    f"{name}: the template is {len(source):,} characters, over the body "
                    f"limit of {limit:,} (limits.body)"
                )
        # a render with markers is the plain one with markers added, unless a template
        # captures output (then the plain HTML is rendered on its own when needed)
        self._transparent = not any(map(self._captures, sources.values()))

    def _prepare_caches(self) -> None:
        """The per-message work whose result only changes with its input, done once."""
        self._aliases: dict[tuple[str, ...], tuple[tuple[str, str], ...]] = {}  # template_names
        self._md_marked: tuple[str, int] | None = None  # the marked Markdown, its wraps
        self._qp = mime.QPCache()
        self._wrapped: dict[str, str] = {}
        self._subjects: dict[str, str] = {}  # Subject header lines by subject
        self._from_line: str | None = None  # for a static From, on first use
        self._date: tuple[int, str] = (-1, "")  # (second, Date value)
        # the fast path's back-off (see _try_fast): messages it refused in a row, and how
        # many more go straight to the plain path before it is tried again
        self._refused = 0
        self._skip = 0
        self._mailto_prefix: str | None = None  # for a static mailto without a query
        if self._unsub_mailto is not None and self._unsub_mailto.static:
            text = self._unsub_mailto.source.strip()
            if text.lower().startswith("mailto:"):
                text = text[len("mailto:") :]
            addr, _, query = text.partition("?")
            if not query:
                # a bad address is reported for every recipient by hdr.mailto_uri, as before
                with contextlib.suppress(RecipientError):
                    self._mailto_prefix = f"mailto:{hdr.ascii_addr_spec(addr)}?subject="
        self.cache = BodyCache(
            inline=self.inliner.inline,
            convert_text=textpart.convert if self._text is None else None,
            tracker=self.tracker,
            # Markdown reads more of a value than html2text does (emphasis, tables)
            prose=not self.is_markdown,
        )

    # ------------------------------------------------------------------ construction helpers

    def _load(self, env: LimitedSandbox, path: Path) -> Template:
        name = self._template_name(path)
        try:
            return env.get_template(name)
        except TemplateSyntaxError as exc:
            where = exc.filename or str(path)
            raise TemplateError(
                f"{where}:{exc.lineno}: template syntax error: {exc.message}"
            ) from None
        except TemplateNotFound as exc:
            raise TemplateError(self._not_found(path, str(exc.name))) from None
        except UnicodeDecodeError:
            raise TemplateError(f"{path}: not UTF-8 text") from None

    def _plain_body_of(self, path: Path) -> MarkedBody | None:
        env = self._marked_env
        assert env.loader is not None
        name = self._template_name(path)
        pieces = simple_pieces(env.parse(env.loader.get_source(env, name)[0]), env.filters)
        return MarkedBody.of(
            pieces,
            autoescape=EvalContext(env, name).autoescape,
            globals_=self._body_marked.globals,
        )

    def _captures(self, source: str) -> bool:
        """Whether a template uses its own output as a value (see ``_CAPTURING``)."""
        tree = self._html_env.parse(source)
        if any(True for _ in tree.find_all(_CAPTURING)):
            return True
        return any(n.name in ("super", "self") for n in tree.find_all(nodes.Name))

    def _not_found(
        self, user: Path | str, missing: str, sources: Mapping[str, str] | None = None
    ) -> str:
        """A missing include, named at the file and line that asks for it."""
        source: str | None = None
        path = user if isinstance(user, Path) else self._template_path(user)
        if isinstance(user, Path):
            name = self._template_name(user)
            sources = {name: self._read_source(name) or "", **(sources or {})}
        for name, text in (sources or {}).items():
            if f"'{missing}'" in text or f'"{missing}"' in text:
                path, source = self._template_path(name), text
                break
        return missing_include(str(path), missing, self.folders, source)

    def _template_path(self, name: str) -> Path:
        for folder in self.folders:
            if (folder / name).is_file():
                return folder / name
        return self.campaign.template if not self.folders else self.folders[0] / name

    def _read_source(self, name: str) -> str | None:
        loader = self._html_env.loader
        assert loader is not None
        try:
            return loader.get_source(self._html_env, name)[0]
        except (TemplateNotFound, OSError, UnicodeDecodeError):
            return None

    def _missing(self, exc: UndefinedError, key: str, fields: Mapping[str, Any]) -> MissingVariable:
        """The error for an undefined name: where, what exists, and the nearest name."""
        name, attribute = undefined_name(str(exc))
        where = _location(exc)
        columns = tuple(dict.fromkeys(n for k in fields if (n := field_id(k))))
        if attribute:
            known = attribute_names([self.campaign.variables, fields])
            hint = did_you_mean(name, sorted(known))
            what = f"the attribute {name!r} is not defined for {key}{hint}"
        else:
            variables = tuple(self.campaign.variables)
            hint = did_you_mean(name, [*columns, *variables])
            what = (
                f"the variable {name!r} is not defined for {key}: it is neither a column of "
                "the list nor in the campaign's variables; "
                + columns_hint(name, columns, variables)
            )
        optional = "| default('...')" if attribute else f"{{{{ {name} | default('...') }}}}"
        return MissingVariable(
            f"{where + ': ' if where else ''}{what} (use {optional} for an optional value)",
            name,
            columns,
            where=where,
            attribute=attribute,
            hint=hint,
        )

    def _template_name(self, path: Path) -> str:
        for folder in self.folders:
            if path.is_relative_to(folder):
                return path.relative_to(folder).as_posix()
        return path.name

    def _sources(self) -> dict[str, str]:
        """Every template source the messages depend on, by name (for hash and checks)."""
        out: dict[str, str] = {}
        loader = self._html_env.loader
        assert loader is not None
        pending = [self._template_name(self.campaign.template)]
        if self.is_markdown:
            pending.append(
                self._template_name(self.campaign.layout)
                if self.campaign.layout
                else BUILTIN_LAYOUT_NAME
            )
        if self.campaign.text_template is not None:
            pending.append(self._template_name(self.campaign.text_template))
        dynamic = False
        while pending:
            name = pending.pop()
            if name in out:
                continue
            try:
                source = loader.get_source(self._html_env, name)[0]
                # compile every static include now: a missing file or a syntax error in
                # a partial is found before the first message, not at it
                self._html_env.get_template(name)
            except TemplateNotFound as exc:
                raise TemplateError(self._not_found(name, str(exc.name), out)) from None
            except TemplateSyntaxError as exc:
                raise TemplateError(
                    f"{exc.filename or name}:{exc.lineno}: template syntax error: {exc.message}"
                ) from None
            out[name] = source
            for ref in meta.find_referenced_templates(self._html_env.parse(source)):
                if ref is None:
                    dynamic = True
                elif ref not in out:
                    pending.append(ref)
        if dynamic:
            # an include chosen at run time may be any file of the template folders
            for folder in self.folders:
                for path in sorted(folder.rglob("*")):
                    if path.is_file() and path.suffix.lower() in (".html", ".htm", ".md", ".txt"):
                        rel = path.relative_to(folder).as_posix()
                        out.setdefault(rel, path.read_text(encoding="utf-8", errors="replace"))
        return out

    def _body_names(self) -> set[str]:
        names: set[str] = set()
        for source in self._sources().values():
            names |= meta.find_undeclared_variables(self._html_env.parse(source))
        return names

    def _list_id(self) -> str:
        value = self.campaign.list_id
        if value:
            value = value.strip()
            return value if "<" in value else f"<{value}>"
        slug = _SLUG.sub("-", self.campaign.name.lower()).strip("-") or "list"
        return f"<{slug}.{self.sender_domain}>"

    def _files(self) -> list[Attachment]:
        out = []
        for cid, path in self.campaign.images.items():
            data = self._read(path, f"images.{cid}")
            kind = mime.guess_type(path.name)
            if not kind.startswith("image/"):
                raise ConfigError(f"{self.campaign.path}: images.{cid}: {path} is not an image")
            if any(c in cid for c in '<>"\r\n ') or not cid.isascii():
                raise ConfigError(
                    f"{self.campaign.path}: images.{cid}: a content id is ASCII without "
                    "spaces or <>, like 'logo'"
                )
            out.append(Attachment(path.name, kind, data, content_id=cid))
        for i, path in enumerate(self.campaign.attachments):
            data = self._read(path, f"attachments[{i}]")
            out.append(Attachment(path.name, mime.guess_type(path.name), data))
        return out

    def _read(self, path: Path, key: str) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"{self.campaign.path}: {key}: cannot read {path}: {exc.strerror}"
            ) from None

    def _hash(self) -> str:
        c = self.campaign
        h = hashlib.sha256()
        unsub = c.unsubscribe
        sources = self._sources()
        html_sources = "".join(sources.values())
        stylesheets = {
            p.name: p.read_text(encoding="utf-8", errors="replace")
            for p in self.inliner.local_stylesheets(html_sources)
        }
        doc: dict[str, Any] = {
            "name": c.name,
            "from": c.from_,
            "reply_to": c.reply_to,
            "subject": c.subject,
            "templates": sources,
            "stylesheets": stylesheets,
            "builtin_layout": BUILTIN_LAYOUT if self.is_markdown and not c.layout else None,
            "headers": c.headers,
            "list_id": c.list_id,
            "feedback_id": c.feedback_id,
            "transactional": c.transactional,
            "variables": c.variables,
            "unsubscribe": None if unsub is None else unsub.model_dump(),
        }
        if c.format is not None:  # only when set: the hash of existing campaigns stays
            doc["format"] = c.format
        if c.to is not None:  # likewise
            doc["to"] = c.to
        if c.attachment_templates:  # likewise
            doc["attachment_templates"] = c.attachment_templates
        if c.cc or c.bcc:  # likewise
            doc["cc"], doc["bcc"] = c.cc, c.bcc
        if c.tracking.own:  # likewise: turning own tracking on changes every message
            doc["tracking"] = c.tracking.model_dump(exclude={"expire_after"})
        h.update(json.dumps(doc, sort_keys=True, default=str).encode("utf-8"))
        for att in self.attachments:
            h.update(f"\0{att.filename}\0{att.content_id}\0{len(att.data)}\0".encode())
            h.update(att.data)
        return h.hexdigest()

    # ------------------------------------------------------------------ per recipient

    @property
    def stats(self) -> Stats:
        """How many bodies took the cached path and how many the straightforward one."""
        return self.cache.stats

    @property
    def needs_secret(self) -> bool:
        return self._secret is not None

    def message_id(self, key: str) -> str:
        """``<hash@sender-domain>``, the same for the same campaign and recipient key."""
        digest = hashlib.sha256(f"{self.campaign.name}\n{key}".encode()).hexdigest()[:40]
        return f"<{digest}@{self.sender_domain}>"

    def context(self, key: str, email: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The template variables for one recipient (without subject and unsubscribe_url)."""
        ctx: dict[str, Any] = dict(self.campaign.variables)
        ctx.update(fields)
        contact = dict(fields)
        keys = tuple(fields)
        aliases = self._aliases.get(keys)
        if aliases is None:
            aliases = template_names(keys)
            if len(self._aliases) < 64:  # a few shapes per audience; never grow without bound
                self._aliases[keys] = aliases
        for name, column in aliases:
            ctx[name] = contact[name] = fields[column]
        ctx["contact"] = contact
        ctx["email"] = email
        ctx["campaign"] = self.campaign.name
        if self._secret is not None:
            ctx["unsubscribe_token"] = make_token(self._secret, key, self.campaign.name)
        return ctx

    def render(self, key: str, email: str, fields: Mapping[str, Any]) -> Message:
        """The message for one recipient; :class:`RecipientError` if this one cannot get one."""
        return MessageCodec.decode(self.render_tuple(key, email, fields))

    def render_tuple(self, key: str, email: str, fields: Mapping[str, Any]) -> tuple[Any, ...]:
        """:meth:`render`'s message as ``MessageCodec.encode`` gives it, without making it.

        What a render worker sends: building the frozen Message only to take it apart
        again cost ~8 us of a worker's ~170 us a message.
        """
        try:
            return self._render(key, email, fields)
        except StampError:
            raise
        except UndefinedError as exc:
            raise self._missing(exc, key, fields) from None
        except LimitExceeded as exc:
            where = _location(exc)
            raise TemplateError(f"{where + ': ' if where else ''}{exc}") from None
        except RecursionError as exc:
            where = _location(exc)
            raise TemplateError(
                f"{where + ': ' if where else ''}the template calls itself (a macro or "
                "include) without end"
            ) from None
        except MemoryError:
            raise TemplateError(
                "the template needs more memory than there is; see limits: in the README"
            ) from None
        except SecurityError as exc:
            where = _location(exc)
            raise TemplateError(
                f"{where + ': ' if where else ''}the template tried something the sandbox "
                f"forbids: {exc}"
            ) from None
        except TemplateNotFound as exc:
            raise TemplateError(
                missing_include(str(self.campaign.template), str(exc.name), self.folders)
            ) from None
        except (ValueError, TypeError, ArithmeticError, LookupError) as exc:
            where = _location(exc)
            raise RecipientError(
                f"{where + ': ' if where else ''}rendering failed for {key}: "
                f"{self._redactor.redact(str(exc))}"
            ) from None

    def _render(self, key: str, email: str, fields: Mapping[str, Any]) -> tuple[Any, ...]:
        c = self.campaign
        self._budget.start()
        ctx = self.context(key, email, fields)
        simple = _SIMPLE_ADDR.fullmatch(email) is not None and len(email) < 900
        recipient = email if simple else hdr.ascii_addr_spec(email)

        # headers
        subject = self._subject.render(ctx).strip()
        hdr.check_value("Subject", subject, "subject")
        sender = self._static_from or hdr.address(
            self._from_name.render(ctx).strip(), self.sender, "From"
        )
        if self._to is not None:
            to = hdr.to_address(self._to.render(ctx), recipient)
            to_line = hdr.address_line("To", to)
        elif simple:
            # what hdr.address gives for an address it leaves as it is
            to = hdr.EncodedAddress(recipient, (recipient,), recipient, recipient)
            to_line = "To: " + recipient
        else:
            to = hdr.address("", recipient, "To")
            to_line = hdr.address_line("To", to)
        reply: hdr.EncodedAddress | None = None
        if self._reply_to is not None:
            rfield, raddr = self._reply_to
            reply = hdr.address(rfield.render(ctx).strip(), raddr, "Reply-To")
        extra: dict[str, str] = {}
        unsubscribe_url: str | None = None
        if self._unsub_url is not None:
            unsubscribe_url = hdr.clean_url(self._unsub_url.render(ctx).strip(), "unsubscribe.url")
        mailto: str | None = None
        if self._unsub_mailto is not None:
            token = ctx.get("unsubscribe_token")
            if self._mailto_prefix is not None and (token is None or isinstance(token, str)):
                # hdr.mailto_uri of the same static address, without parsing it again
                # quote() maps each character on its own: quote("unsubscribe " + t) is this
                what = "unsubscribe%20" + quote(token, safe="") if token else "unsubscribe"
                mailto = self._mailto_prefix + what
            else:
                mailto = hdr.mailto_uri(self._unsub_mailto.render(ctx), token)
        if unsubscribe_url is not None or mailto is not None:
            extra["List-Unsubscribe"] = hdr.list_unsubscribe(unsubscribe_url, mailto)
            if unsubscribe_url is not None and unsubscribe_url.lower().startswith("https://"):
                extra["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        cc: list[hdr.EncodedAddress] = []
        bcc: list[hdr.EncodedAddress] = []
        for header, fld in self._copies:
            (cc if header == "Cc" else bcc).extend(hdr.copies(fld.render(ctx), header))
        extra.update(self._static_headers)
        for name, fld in self._headers:
            value = fld.render(ctx).strip()
            hdr.check_value(name, value, f"headers.{name}")
            extra[name] = value

        # body
        ctx["subject"] = subject
        if unsubscribe_url is not None:
            ctx["unsubscribe_url"] = unsubscribe_url
        elif mailto is not None:
            ctx["unsubscribe_url"] = mailto
        if self.tracker is not None:
            self._track = (
                self.tracker.token(key, self._clock()),
                ctx.get("unsubscribe_url"),
            )
        html, text, html_qp, text_7bit, html_json = self._render_body(ctx)
        attachments = self.attachments
        own_parts: list[bytes] = []
        if self._own_files:
            own, own_parts = self._recipient_files(ctx, key)
            attachments = (*attachments, *own)

        mid = self.message_id(key)
        raw = b""
        text_json = None
        if self.raw:
            assert html is not None  # no JSON literal is made for MIME
            raw = self._raw(
                mid,
                sender,
                to_line,
                subject,
                reply,
                extra,
                None if self.is_text else html,
                text,
                html_qp,
                text_7bit,
                own_parts,
                cc,
            )
        else:
            # not contextlib.suppress: making the manager cost ~1 us a message
            try:  # noqa: SIM105
                text_json = orjson.dumps(text)
            except TypeError:  # a lone surrogate: the adapter reports it
                pass
        # MessageCodec.encode(campaign=..., ...) written out: a call with 18 keywords
        # costs ~9k instructions (2% of a render), the tuple ~0. The order is the
        # codec's; tests/test_render.py checks this tuple against it field by field.
        return (
            c.name,  # campaign
            key,  # key
            recipient,  # recipient
            self.sender,  # sender
            mid,  # message_id
            sender.display,  # from_header
            to.display,  # to_header
            subject,  # subject
            html,  # html: None exactly when html_json stands for it
            None if text_json is not None else text,  # text
            raw,  # raw
            reply.display if reply is not None else None,  # reply_to
            extra,  # headers
            attachments,  # attachments
            {"campaign": c.name, "recipient": key},  # tags
            html_json,  # html_json
            text_json,  # text_json
            tuple(a.display for a in cc),  # cc
            tuple(a.display for a in bcc),  # bcc
            None,  # envelope_from: the engine sets it (it knows the ledger row)
        )

    def _raw(
        self,
        mid: str,
        sender: hdr.EncodedAddress,
        to_line: str,
        subject: str,
        reply: hdr.EncodedAddress | None,
        extra: dict[str, str],
        html: str | None,
        text: str,
        html_qp: bytes | None,
        text_7bit: bool,
        own_parts: list[bytes],
        cc: list[hdr.EncodedAddress],
    ) -> bytes:
        """The complete message: header lines and the MIME body, CRLF, ASCII (``html``
        None: a text/plain message)."""
        if sender is self._static_from:
            if self._from_line is None:
                self._from_line = hdr.address_line("From", sender)
            from_line = self._from_line
        else:
            from_line = hdr.address_line("From", sender)
        lines = [
            f"Date: {self._formatdate(self._clock())}",
            from_line,
            to_line,
            self._subject_line(subject),
            f"Message-ID: {mid}",
        ]
        if cc:
            lines.append(hdr.address_list_line("Cc", cc))
        if reply is not None:
            lines.append(hdr.address_line("Reply-To", reply))
        for name, value in extra.items():
            if name == "List-Unsubscribe":
                lines.append(hdr.list_line(name, value))
            elif name in self._static_lines:
                lines.append(self._static_lines[name])
            else:
                lines.append(hdr.unstructured(name, value))
        entity = mime.body(
            text,
            html,
            "=_stamp_" + mid[1:21],
            self._inline_parts,
            [*self._attachment_parts, *own_parts] if own_parts else self._attachment_parts,
            qp=self._qp,
            html_qp=html_qp,
            text_7bit=text_7bit,
        )
        return mime.message(lines, entity)

    # ------------------------------------------------------------------ body

    def _finish_line(self, line: str) -> str:
        """textpart.finish_line, cached like textpart.finish caches (most values repeat)."""
        if len(line) <= textpart.WIDTH:
            return line  # what finish_line leaves alone, without hashing it
        done = self._wrapped.get(line)
        if done is None:
            done = textpart.finish_line(line)
            if len(self._wrapped) >= 20_000:
                self._wrapped.clear()
            self._wrapped[line] = done
        return done

    def _subject_line(self, subject: str) -> str:
        """``hdr.unstructured("Subject", subject)``, cached: a subject with a first name
        in it repeats as often as the name, and encoding a non-ASCII one costs ~20 us."""
        line = self._subjects.get(subject)
        if line is None:
            line = hdr.unstructured("Subject", subject)
            if len(self._subjects) >= 20_000:
                self._subjects.clear()
            self._subjects[subject] = line
        return line

    def _formatdate(self, when: float) -> str:
        """``formatdate(when, localtime=True)``, computed once per second."""
        second = int(when)
        # near the end of a second, microsecond rounding may give the next one
        if when < 0 or when - second > 0.999:
            return formatdate(when, localtime=True)
        cached, value = self._date
        if cached != second:
            value = formatdate(when, localtime=True)
            self._date = (second, value)
        return value

    def _render_body(
        self, ctx: dict[str, Any]
    ) -> tuple[str | None, str, bytes | None, bool, bytes | None]:
        """(html, text, the HTML quoted-printable if cached, whether text fits 7bit, the HTML
        as a JSON string literal if cached and wanted; then the html is None)."""
        budget = self._budget
        budget.limit = self._body_limit
        budget.what = "the body"
        if self.is_text:
            # the author's text is the message, as written; only line ends are normalised
            return "", self._text_part(self._body.render(ctx)), None, False, None
        text_template = self._text
        parsed: tuple[Layout, list[str]] | None = None

        def slow() -> tuple[str, str]:
            # the plain HTML is the marked render without its markers where that holds,
            # not a second render of the template (see skeleton_cache.counting_mark)
            plain = (
                unmarked(parsed)
                if parsed is not None and self._unmarked_ok(parsed)
                else self._plain_html(ctx)
            )
            html = self.inliner.inline(plain)
            text = textpart.convert(html) if text_template is None else ""
            if self.tracker is not None and self._track is not None:
                # the text keeps the real addresses (see stampcli.render.tracking)
                html = self.tracker.rewrite(html, *self._track)
            return html, text

        html: str | None
        text: str | None
        html_qp: bytes | None = None
        html_json: bytes | None = None
        finished: tuple[str, bool] | None = None  # the wrapped text, and whether it fits 7bit
        if self._fast and self._try_fast():
            parsed = self._marked(ctx)
            served = self.cache.stats.fast
            html, text, html_qp, finished, html_json = self.cache.body_encoded(
                parsed,
                slow,
                mime.qp_encode if self.raw else None,
                self._finish_line if text_template is None else None,
                json=not self.raw,
                track=self._track,
            )
            self._served(self.cache.stats.fast > served)
        else:
            if self._fast:
                self.cache.stats.slow += 1
                self._md_marked = None  # a marked Markdown render of an earlier message
            html, text = slow()
        if text_template is not None:
            # the author's text is used as written; only line ends are normalised
            return html, self._text_part(text_template.render(ctx)), html_qp, False, html_json
        if finished is not None:
            return html, finished[0], html_qp, finished[1], html_json
        assert text is not None  # body_encoded leaves it out only for the finished text
        return html, textpart.finish(text, cache=self._wrapped), html_qp, False, html_json

    def _try_fast(self) -> bool:
        """Whether this message tries the cached path. For a Markdown template a refusal
        costs a second body render and Markdown conversion on top of the plain path
        (an HTML template's plain HTML is its marked render without the markers, and
        its new layouts must be seen to be built). So after REFUSALS refusals in a row
        the next Markdown messages go straight to the plain path, twice as many each
        time it refuses again (at most BACKOFF_MAX), then it is tried once more. Both
        paths give the same bytes: only the time differs."""
        if self._skip:
            self._skip -= 1
            return False
        return True

    def _served(self, fast: bool) -> None:
        if fast or not self.is_markdown:
            self._refused = 0
            return
        self._refused += 1
        if self._refused >= REFUSALS:
            # 1, 2, 4 ... BACKOFF_MAX messages skipped after each further refusal
            self._skip = min(BACKOFF_MAX, 1 << (self._refused - REFUSALS))

    def _text_part(self, text: str) -> str:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        return text if text.endswith("\n") else text + "\n"

    def _unmarked_ok(self, parsed: tuple[Layout, list[str]]) -> bool:
        """Whether ``unmarked(parsed)`` is the plain render: a plain body's parse
        always is; a Jinja one when no template captures output and every value found is
        one the marker wrapped (no marker character of the template's or a value's own)."""
        if self.is_markdown:
            return False
        if self._plain_body is not None and parsed[0] is self._plain_body.layout:
            return True
        return self._transparent and len(parsed[1]) == self._marks[0]

    def _plain_html(self, ctx: dict[str, Any]) -> str:
        """The body HTML before inlining, rendered the ordinary way."""
        if not self.is_markdown:
            return self._body.render(ctx)
        assert self._layout is not None
        marked, self._md_marked = self._md_marked, None
        if (
            marked is not None
            and self._transparent
            and marked[0].count(MARK_OPEN) == marked[1] == marked[0].count(MARK_CLOSE)
        ):
            # the marked render of this recipient's Markdown, without its markers
            source = marked[0].replace(MARK_OPEN, "").replace(MARK_CLOSE, "")
        else:
            source = self._body.render(ctx)
        content = markdown.to_html(source)
        return self._layout.render({**ctx, "content": Markup(content)})

    def _marked(self, ctx: dict[str, Any]) -> tuple[Layout, list[str]] | None:
        """The same HTML with its output values apart (``skeleton_cache.parse_pieces``)."""
        if self._plain_body is not None:
            parsed = self._plain_body.parse(ctx)
            if parsed is not None:
                return parsed
        return parse_pieces(self._marked_pieces(ctx), self._budget)

    def _marked_pieces(self, ctx: dict[str, Any]) -> Iterator[str]:
        """The same HTML with every output value between the skeleton cache's markers, as Jinja's
        pieces (``Template.generate``: the render, not yet joined)."""
        self._marks[0] = 0
        if not self.is_markdown:
            return self._body_marked.generate(ctx)
        assert self._layout_marked is not None
        body = self._body_marked.render(ctx)
        self._md_marked = (body, self._marks[0])
        content = markdown.to_html(body)
        return self._layout_marked.generate({**ctx, "content": Markup(content)})
