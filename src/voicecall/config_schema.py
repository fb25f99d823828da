"""The settings schema as data: every key's path, type, default, environment fallback and help.

``voicecall config check`` and the ``docs/configuration.md`` generator both read the attrs
classes of :mod:`voicecall.config` through this module, so a key added there shows up in both
without anyone listing it again. Help text is each attribute's docstring (the string literal
under it), read from the source; the environment fallbacks are found by loading an empty
document with an environment that answers every lookup, so they are never listed by hand.
"""

from __future__ import annotations

import ast
import enum
import inspect
import itertools
import textwrap
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any, Final

import attrs

from voicecall import config as settings

__all__ = ["SECTIONS", "SchemaKey", "env_fallbacks", "is_secret", "schema_keys", "type_text"]

# (AppConfig attribute, class, where it lives in the file)
SECTIONS: Final = (
    ("voice", settings.VoiceCallConfig, "plugins.entries.voice-call.config"),
    ("tts", settings.TtsConfig, "messages.tts"),
    ("gateway", settings.GatewayConfig, "gateway"),
)

_SECRET_WORDS: Final = ("token", "apikey", "secret", "password")
_MARK: Final = "\x00env:"


def is_secret(key: str) -> bool:
    """Keys whose values are never printed (tokens, API keys)."""
    lowered = key.replace("_", "").lower()
    return any(word in lowered for word in _SECRET_WORDS)


@attrs.frozen
class SchemaKey:
    """One leaf key of the file."""

    path: str
    attr_path: tuple[str, ...]
    type: str
    default: Any
    doc: str
    env: tuple[str, ...]


def json_key(field: attrs.Attribute[Any]) -> str:
    """The file's (camelCase) name of an attrs field, as the loader reads it."""
    explicit = field.metadata.get("voicecall_json_key")
    if explicit is not None:
        return str(explicit)
    head, *rest = field.name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def attribute_docs(cls: type) -> dict[str, str]:
    """The docstring under each attribute of ``cls`` (PEP 257 attribute docstrings)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def type_text(tp: Any) -> str:
    """A short human name for a field's type: ``int``, ``"a" | "b"``, ``list of E.164``…"""
    tp = _unwrap(tp)
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return " \\| ".join(f'"{v}"' for v in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        parts = [type_text(a) for a in typing.get_args(tp) if a is not type(None)]
        return " \\| ".join(parts)
    if origin is tuple:
        return f"list of {type_text(typing.get_args(tp)[0])}"
    if origin is not None and issubclass(origin, Mapping):
        return "object"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " \\| ".join(f'"{m.value}"' for m in tp)
    if tp is bool:
        return "boolean"
    if tp is int:
        return "integer"
    if tp is float:
        return "number"
    if tp is str:
        return "string"
    return getattr(tp, "__name__", str(tp))


def _default(field: attrs.Attribute[Any]) -> Any:
    default: Any = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return None if default.takes_self else default.factory()
    return default


_Leaf = tuple[str, tuple[str, ...], "attrs.Attribute[Any]", Any, str]


def _walk(cls: type, path: str, attr_path: tuple[str, ...]) -> Iterator[_Leaf]:
    """(path, attribute path, field, resolved type, doc) for each leaf under ``cls``."""
    hints = typing.get_type_hints(cls, include_extras=True)
    docs = attribute_docs(cls)
    for field in attrs.fields(cls):
        tp = hints.get(field.name, field.type)
        bare = _unwrap(tp)
        key_path = f"{path}.{json_key(field)}"
        if isinstance(bare, type) and attrs.has(bare):
            yield from _walk(bare, key_path, (*attr_path, field.name))
            continue
        yield key_path, (*attr_path, field.name), field, tp, docs.get(field.name, "")


class _AnsweringEnv(dict[str, str]):
    """An environment in which every variable not in ``skip`` is set to a recognisable mark."""

    def __init__(self, skip: frozenset[str]) -> None:
        super().__init__()
        self.skip = skip

    def get(self, key: str, default: Any = None) -> Any:
        return default if key in self.skip else f"{_MARK}{key}"

    def __getitem__(self, key: str) -> str:
        if key in self.skip:
            raise KeyError(key)
        return f"{_MARK}{key}"

    def __contains__(self, key: object) -> bool:
        return key not in self.skip


def _value_at(obj: Any, attr_path: tuple[str, ...]) -> Any:
    for name in attr_path:
        obj = getattr(obj, name, None)
    return obj


def env_fallbacks() -> dict[str, tuple[str, ...]]:
    """For each key, the environment variables it falls back to, in the order they are tried."""
    found: dict[str, list[str]] = {}
    skip: frozenset[str] = frozenset({"VOICECALL_CONFIG"})
    for _ in range(4):  # a key with N fallbacks needs N rounds; none has more than a few
        try:
            config = settings.parse_config({}, _AnsweringEnv(skip))
        except Exception:  # a validation rule that the marks trip: report what was found
            break
        new = set()
        for section, cls, root in SECTIONS:
            for path, attr_path, _field, _type, _doc in _walk(cls, root, ()):
                value = _value_at(getattr(config, section), attr_path)
                if isinstance(value, str) and value.startswith(_MARK):
                    name = value[len(_MARK) :]
                    if name not in found.setdefault(path, []):
                        found[path].append(name)
                        new.add(name)
        if not new:
            break
        skip = skip | new
    return {path: tuple(names) for path, names in found.items() if names}


def schema_keys() -> list[SchemaKey]:
    """Every leaf key of the three sections, in declaration order."""
    env = env_fallbacks()
    return [
        SchemaKey(
            path=path,
            attr_path=attr_path,
            type=type_text(tp),
            default=_default(field),
            doc=doc,
            env=env.get(path, ()),
        )
        for _section, cls, root in SECTIONS
        for path, attr_path, field, tp, doc in _walk(cls, root, ())
    ]
