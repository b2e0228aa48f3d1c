"""Typed dataclass configs and the ``--set a.b=value`` override parser.

Every experiment's config is a tree of dataclasses. Overrides are parsed against each field's
type annotation, and the dataclasses' ``__post_init__`` validators run again on the result, so
a bad value is reported with the field's dotted name and the accepted range.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Literal, TypeVar, get_args, get_origin

from signalprop.errors import ConfigError

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def positive(name: str, value: float) -> None:
    """Raise ConfigError unless ``value > 0``."""
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")


def positive_values(name: str, values: typing.Sequence[float], hint: str = "") -> None:
    """Raise ConfigError unless ``values`` is non-empty and every entry is > 0 (``hint`` is
    appended to the empty-list message, e.g. an example setting)."""
    if not values:
        raise ConfigError(f"{name} must not be empty{hint}")
    for value in values:
        positive(f"{name} entry", value)


def non_negative(name: str, value: float) -> None:
    """Raise ConfigError unless ``value >= 0``."""
    if not value >= 0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}")


def positive_fields(cfg: Any, section: str, *names: str) -> None:
    """:func:`positive` on each field ``names`` of the config part ``cfg``, in order, each named
    ``<section>.<field>`` (``model.width must be > 0, got 0``)."""
    for name in names:
        positive(f"{section}.{name}", getattr(cfg, name))


def non_negative_fields(cfg: Any, section: str, *names: str) -> None:
    """:func:`non_negative` on each field ``names`` of ``cfg``, as :func:`positive_fields`."""
    for name in names:
        non_negative(f"{section}.{name}", getattr(cfg, name))


@typing.dataclass_transform(frozen_default=True)
def config_part(section: str, positive: tuple[str, ...] = (),
                non_negative: tuple[str, ...] = ()) -> typing.Callable[[type[T]], type[T]]:
    """Class decorator: a frozen dataclass for the config part ``section`` (``data``, ``model``,
    ...) whose ``positive`` fields must be > 0 and ``non_negative`` ones >= 0, checked (with
    :func:`positive_fields` and :func:`non_negative_fields`) before the class's own
    ``__post_init__``, if it has one, and after a base class's (when it has none of its own).
    ``@config_part("model", positive=("width",))`` stands for ``@dataclass(frozen=True)`` and a
    ``__post_init__`` that checks ``model.width > 0``."""

    def wrap(cls: type[T]) -> type[T]:
        own = cls.__dict__.get("__post_init__")

        def __post_init__(self: Any) -> None:
            inherited = getattr(super(cls, self), "__post_init__", None)
            if own is None and inherited is not None:  # a base part's checks come first
                inherited()
            positive_fields(self, section, *positive)
            non_negative_fields(self, section, *non_negative)
            if own is not None:
                own(self)

        __post_init__.__qualname__ = f"{cls.__qualname__}.__post_init__"
        cls.__post_init__ = __post_init__  # type: ignore[attr-defined]
        return dataclasses.dataclass(frozen=True)(cls)

    return wrap


def in_range(name: str, value: float, low: float, high: float) -> None:
    """Raise ConfigError unless ``low <= value <= high``."""
    if not low <= value <= high:
        raise ConfigError(f"{name} must be in [{low}, {high}], got {value!r}")


def one_of(name: str, value: Any, allowed: typing.Iterable[Any]) -> None:
    """Raise ConfigError unless ``value`` is one of ``allowed`` (with a close-match hint)."""
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {allowed}, got {value!r}{_hint(value, allowed)}")


def _hint(word: Any, choices: typing.Iterable[Any]) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=3, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(text: str, annotation: Any, name: str) -> Any:
    """Parse ``text`` as a value of type ``annotation``."""
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = get_args(annotation)
        if type(None) in options and text.lower() in {"none", "null"}:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(text, option, name)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{name}: cannot parse {text!r}")
    if origin is Literal:
        allowed = get_args(annotation)
        for choice in allowed:
            if str(choice) == text:
                return choice
        raise ConfigError(
            f"{name} must be one of {list(allowed)}, got {text!r}{_hint(text, allowed)}"
        )
    if origin in (tuple, list):
        args = get_args(annotation)
        item_type = args[0] if args else str
        items = [t.strip() for t in text.strip("()[]").split(",") if t.strip()]
        parsed = [_coerce(item, item_type, name) for item in items]
        return tuple(parsed) if origin is tuple else parsed
    if annotation is bool:
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{name} expects true or false, got {text!r}")
    if annotation is int:
        try:
            value = float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError:
            raise ConfigError(f"{name} expects an integer, got {text!r}") from None
        if isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(f"{name} expects an integer, got {text!r}")
            value = int(value)
        return value
    if annotation is float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{name} expects a number, got {text!r}") from None
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {text!r}")
        return value
    if annotation is str:
        return text
    raise ConfigError(f"{name}: overriding a field of type {annotation} is not supported")


def field_names(cfg: Any, prefix: str = "") -> list[str]:
    """All dotted leaf field names of a dataclass config."""
    names = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            names.extend(field_names(value, f"{prefix}{f.name}."))
        else:
            names.append(f"{prefix}{f.name}")
    return names


def _set(cfg: T, path: list[str], text: str, full: str, root: Any) -> T:
    key = path[0]
    names = [f.name for f in dataclasses.fields(cfg)]
    if key not in names:
        raise ConfigError(
            f"unknown config key {full!r}{_hint(full, field_names(root))}; "
            "`signalprop list --config NAME` shows all keys"
        )
    current = getattr(cfg, key)
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"unknown config key {full!r}: {key!r} has no sub-keys")
        new_value = _set(current, path[1:], text, full, root)
    else:
        if dataclasses.is_dataclass(current):
            raise ConfigError(f"{full!r} is a group; set one of its keys, e.g. {full}.<key>=...")
        new_value = _coerce(text, _field_types(type(cfg))[key], full)
    try:
        return dataclasses.replace(cfg, **{key: new_value})
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if full in message else f"{full}: {message}") from None


def apply_overrides(cfg: T, overrides: typing.Iterable[str]) -> T:
    """Return a copy of ``cfg`` with each ``a.b=value`` override applied and validated."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value, e.g. train.lr=0.01")
        key, text = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r} has an empty key")
        cfg = _set(cfg, key.split("."), text.strip(), key, cfg)
    return cfg


def apply_dict(cfg: T, values: dict[str, Any]) -> T:
    """Apply ``{dotted.key: value}`` overrides given as Python values (used for --quick)."""
    return apply_overrides(cfg, [f"{k}={_to_text(v)}" for k, v in values.items()])


def _to_text(value: Any) -> str:
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain JSON-friendly data."""
    return dataclasses.asdict(cfg)


def from_dict(cfg: T, data: dict[str, Any]) -> T:
    """Rebuild a config of ``cfg``'s type from :func:`to_dict` output (for resuming)."""
    changes = {}
    for f in dataclasses.fields(cfg):
        if f.name not in data:
            continue
        current = getattr(cfg, f.name)
        value = data[f.name]
        if dataclasses.is_dataclass(current):
            changes[f.name] = from_dict(current, value)
        else:
            changes[f.name] = tuple(value) if isinstance(current, tuple) else value
    return dataclasses.replace(cfg, **changes)


def require_int(owner: str, name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``, else ConfigError naming ``owner`` and ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{owner} {name} must be an integer >= {minimum}, got {value!r}")
    return value


def require_number(
    owner: str, name: str, value: object, *, low: float | None = None,
    high: float | None = None, open_low: bool = False,
) -> float:
    """``value`` as a finite float in the given range, else ConfigError naming the argument."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if open_low else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bound = "" if low is None else f" {'>' if open_low else '>='} {low}"
        bound += "" if high is None else f"{' and' if bound else ''} <= {high}"
        raise ConfigError(f"{owner} {name} must be a finite number{bound}, got {value!r}")
    return float(value)
