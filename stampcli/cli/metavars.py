"""Help that shows what a user types: ``--limit N``, ``--format eml|html|text``, ``--yes``.

Typer would show Python types as metavars (``--yes <bool>``, ``<list[str]>``,
``<path>``). :class:`StampGroup`, the root group's class, walks every command
once it is built and gives each parameter without its own metavar a plain
one: nothing for a flag, the choices for a choice, ``N`` for a number,
``PATH`` for a path, ``TEXT`` otherwise; an argument shows its name.
"""

from __future__ import annotations

from typing import Any

from typer import _click as click  # typer ships its own click; its types are these
from typer.core import TyperArgument, TyperGroup, TyperOption


def _no_type(ctx: click.Context) -> str:
    return ""


def _option_metavar(option: TyperOption) -> str:
    if option.is_flag:
        return ""
    desc = option.type_descriptor
    if desc.is_choice:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices or ())
    if desc.is_path:
        return "PATH"
    if desc.is_ranged or desc.annotation in (int, float):
        return "N"
    return "TEXT"


def plain_metavars(command: click.Command) -> None:
    """Give ``command``'s parameters, and its subcommands', the metavars a user types."""
    for param in command.params:
        if param.metavar is not None:
            continue
        if isinstance(param, TyperOption):
            param.metavar = _option_metavar(param)
        elif isinstance(param, TyperArgument):
            param.metavar = (param.name or "value").upper()  # typer adds "..." for a list
            # the name says it; the type column would repeat Python's type
            param.display_type_rich = _no_type  # type: ignore[method-assign]
    _plain_help_option(command)
    for sub in getattr(command, "commands", {}).values():
        plain_metavars(sub)


def _plain_help_option(command: click.Command) -> None:
    """``-h, --help`` is made per context, after the walk: give it no metavar as it is made."""
    made = command.get_help_option

    def get_help_option(ctx: click.Context) -> TyperOption | None:
        option = made(ctx)
        if option is not None and option.metavar is None:
            option.metavar = ""
        return option

    command.get_help_option = get_help_option  # type: ignore[method-assign]


class StampGroup(TyperGroup):
    """The ``stamp`` group: typer's, with :func:`plain_metavars` applied to every command."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        plain_metavars(self)

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        # typer adds --install-completion and --show-completion after __init__
        params = super().get_params(ctx)
        for param in params:
            if isinstance(param, TyperOption) and param.metavar is None:
                param.metavar = _option_metavar(param)
        return params
