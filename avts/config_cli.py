"""Command-line flags made from a configuration dataclass, so that every default is written once.

Each stage has one frozen dataclass holding its settings. A field declared with :func:`option` carries its
help text; :func:`add_config_arguments` turns every such field into a flag of the same name
(``min_duration`` → ``--min-duration``) whose default is the field's default, and :func:`config_from_args`
builds the dataclass back from the parsed flags. The dataclass's ``__post_init__`` validates values;
its ``ValueError`` becomes an argparse usage error with that message. Fields typed ``Path`` are local (or
mounted) paths: a URL given there is a usage error, not a folder named ``s3:`` (options that take URLs, such
as shard specifications and ``avts-ingest --out``, are typed ``str``).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

Config = TypeVar("Config")


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    choices: Sequence[Any] | None = None,
    factory: Callable[[], Any] | None = None,
    metavar: str | None = None,
    cli: bool = True,
) -> Any:
    """A dataclass field with its command-line help (``default`` or ``factory`` as in :func:`dataclasses.field`).

    ``cli=False`` keeps the field off the command line (set by code, e.g. a value another field implies).
    """
    metadata = {"help": help, "choices": tuple(choices) if choices else None, "metavar": metavar, "cli": cli}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def local_path(text: str) -> Path:
    """The value of a ``Path`` flag; a URL is refused (``Path("s3://b/run")`` would quietly be ``s3:/b/run``)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path (an unset variable?): name a folder, or '.' for this one")
    if _URL.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a URL: this option takes a local (or mounted) path")
    return Path(text)


def flag_name(field_name: str) -> str:
    """The flag of a field: ``video_time_bins`` → ``--video-time-bins``."""
    return "--" + field_name.replace("_", "-")


def _without_none(kind: Any) -> Any:
    """``X | None`` → ``X`` (an optional field simply defaults to None); anything else unchanged."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in args:
        return next(arg for arg in args if arg is not type(None))
    return kind


def _default_text(value: Any) -> str:
    return " ".join(str(item) for item in value) if isinstance(value, tuple) else str(value)


def add_config_arguments(parser: argparse.ArgumentParser, config_type: type, skip: Sequence[str] = ()) -> None:
    """Add one flag per command-line field of ``config_type`` (fields made with :func:`option`)."""
    hints = typing.get_type_hints(config_type)
    required_first = sorted(  # inherited fields come first in a dataclass; the flags a user must give lead
        dataclasses.fields(config_type),
        key=lambda field: field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING,
    )
    for field in required_first:
        if field.name in skip or "help" not in field.metadata or not field.metadata["cli"]:
            continue
        kind = _without_none(hints[field.name])
        factory = field.default_factory if callable(field.default_factory) else None
        required = field.default is dataclasses.MISSING and factory is None
        default = factory() if factory is not None else None if required else field.default
        shown = not required and factory is None and default not in (None, False)
        help_text = field.metadata["help"] + (f" (default: {_default_text(default)})" if shown else "")
        common: dict[str, Any] = {"dest": field.name, "help": help_text}
        if kind is bool:
            if default is True:
                parser.add_argument(
                    flag_name(field.name), action=argparse.BooleanOptionalAction, default=True, **common
                )
            else:  # False, or None meaning "decide automatically"
                parser.add_argument(flag_name(field.name), action="store_true", default=default, **common)
            continue
        if typing.get_origin(kind) is tuple:
            item = typing.get_args(kind)[0]
            parser.add_argument(
                flag_name(field.name), type=local_path if item is Path else item, nargs="+", default=default, **common
            )
            continue
        converter = local_path if kind is Path else kind
        parser.add_argument(
            flag_name(field.name),
            type=converter,
            default=default,
            required=required,
            choices=field.metadata["choices"],
            metavar=field.metadata["metavar"],
            **common,
        )


def config_from_args(
    config_type: Callable[..., Config], args: argparse.Namespace, parser: argparse.ArgumentParser, **overrides: Any
) -> Config:
    """Build the configuration from parsed flags (plus ``overrides``); invalid values exit with a usage error."""
    values = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(config_type)  # type: ignore[arg-type]
        if hasattr(args, field.name)
    }
    values = {name: tuple(value) if isinstance(value, list) else value for name, value in values.items()}
    try:
        return config_type(**{**values, **overrides})
    except ValueError as error:
        parser.error(str(error))
        raise  # unreachable: parser.error exits


def validate(checks: Sequence[tuple[bool, str]]) -> None:
    """Raise ``ValueError`` with the message of the first failed ``(condition, message)`` check."""
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def output_file_checks(out: Path, suffix: str) -> list[tuple[bool, str]]:
    """The checks (for :func:`validate`) of an ``--out`` file, made before any work: it must end in ``suffix`` (so
    that it can never be a source, a checkpoint or a media file of the run) and be writable as a file."""
    return [
        (out.suffix.lower() == suffix, f"--out must name a {suffix} file, not {out}"),
        (not out.is_dir(), f"--out {out} is a folder; give a {suffix} file path"),
        (not any(parent.exists() and not parent.is_dir() for parent in out.parents), f"--out {out}: lies under a file"),
    ]


def output_folder_checks(out: Path) -> list[tuple[bool, str]]:
    """The checks (for :func:`validate`) of an ``--out`` folder: neither it nor a parent may be a file."""
    return [(not any(path.exists() and not path.is_dir() for path in (out, *out.parents)), f"--out {out} is a file")]
