"""The option grammar shared by every nbopt magic.

A magic line is a sequence of tokens separated by whitespace outside quotes and brackets:
``key=value`` pairs and bare words (a positional name, or a flag such as ``auto``). Each magic
declares its options in a :class:`Schema`; a value is parsed by its option's type:

* numbers, booleans, enumerations, text and paths are literals (``quant=int8`` is the string
  ``"int8"``, never a variable);
* a *name* option (``model=net``) looks the name up in the notebook's namespace;
* an *expression* option (``lr=loguniform(1e-4, 1e-1)``) is evaluated in the notebook's
  namespace with nbopt's space functions in scope.

Any problem raises :class:`nbopt.ConfigError` with one line that says what was wrong, before
anything runs; the magics show it as IPython's ``UsageError``. The grammar itself needs no
IPython.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nbopt.errors import ConfigError, did_you_mean
from nbopt.magics.option_types import (
    _IDENTIFIER,
    Bool,
    Duration,
    Enum,
    Expression,
    Float,
    Identifier,
    Int,
    Name,
    OneOf,
    OptionType,
    Size,
    Text,
    TextList,
    evaluate_expression,
    unquote,
)

__all__ = [
    "Bool",
    "Duration",
    "Enum",
    "Expression",
    "Float",
    "Identifier",
    "Int",
    "Name",
    "OneOf",
    "Option",
    "OptionType",
    "ParsedLine",
    "Schema",
    "Size",
    "Text",
    "TextList",
    "evaluate_expression",
    "tokenize",
    "unquote",
]

_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {v: k for k, v in _OPEN.items()}


def tokenize(line: str) -> list[str]:
    """Split a magic line on whitespace that is outside quotes and brackets.

    Raises ValueError for an unclosed quote or an unbalanced bracket.
    """
    tokens: list[str] = []
    current: list[str] = []
    stack: list[str] = []
    quote = ""
    escaped = False
    for ch in line:
        if quote:
            current.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in _OPEN:
            stack.append(ch)
        elif ch in _CLOSE:
            if not stack or stack[-1] != _CLOSE[ch]:
                raise ValueError(f"unbalanced {ch!r} in: {line.strip()}")
            stack.pop()
        elif ch.isspace() and not stack:
            if current:
                tokens.append("".join(current))
                current = []
            continue
        current.append(ch)
    if quote:
        raise ValueError(f"unclosed quote {quote} in: {line.strip()}")
    if stack:
        raise ValueError(f"unclosed {stack[-1]!r} in: {line.strip()}")
    if current:
        tokens.append("".join(current))
    return tokens


_SAME = "<same as the option>"


@dataclass(frozen=True)
class Option:
    """One option of a magic: its name, type, default and meaning (shown by ``%magic?``).

    ``parameter`` is the engine's keyword argument that the option sets (``eval=`` sets
    ``evaluate``), by default the option's own name; None for an option the magic itself uses
    (``out=``, ``set=``). ``flag``: it may be given as a bare word, meaning True.
    """

    name: str
    type: OptionType
    default: Any = None
    help: str = ""
    flag: bool = False
    parameter: str | None = _SAME

    def __post_init__(self) -> None:
        if self.parameter == _SAME:
            object.__setattr__(self, "parameter", self.name)


@dataclass
class ParsedLine:
    """What a magic line said: option values (defaults filled in) and the rest."""

    values: dict[str, Any]
    given: set[str]
    positional: list[str] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


class Schema:
    """The options of one magic.

    Args:
        magic: The magic's name, for messages (``"tune"``).
        options: Its options.
        positional: Names of bare words it accepts, in order (``("objective",)``).
        extra_keys: If true, unknown ``key=value`` pairs are returned raw in ``extra`` (for
            ``%tune``'s search dimensions) instead of being an error.
        rejected: Options of a sibling form that this one does not take, each with why (an
            option another form uses is an error here, never silently ignored).
    """

    def __init__(
        self,
        magic: str,
        options: Sequence[Option],
        positional: Sequence[str] = (),
        extra_keys: bool = False,
        rejected: Mapping[str, str] | None = None,
    ) -> None:
        self.magic = magic
        self.options = {option.name: option for option in options}
        self.positional = tuple(positional)
        self.extra_keys = extra_keys
        self.rejected = dict(rejected or {})

    def parse(self, line: str, namespace: Mapping[str, Any] | None = None) -> ParsedLine:
        """Parse a magic line; raises :class:`nbopt.ConfigError` on any problem."""
        namespace = {} if namespace is None else namespace
        parsed = ParsedLine(values={}, given=set())
        raw_values: dict[str, str] = {}
        try:
            tokens = tokenize(line)
        except ValueError as exc:
            raise ConfigError(f"%{self.magic}: {exc}") from None
        for token in tokens:
            key, sep, raw = token.partition("=")
            if not sep:
                if self._is_flag(token):
                    key, raw = token, "true"
                else:
                    self._positional(token, parsed)
                    continue
            if not _IDENTIFIER.match(key):
                raise ConfigError(f"%{self.magic}: {token!r} is not of the form key=value")
            if key in raw_values or key in parsed.extra:
                raise ConfigError(f"%{self.magic}: option {key!r} is given twice")
            if key in self.options:
                raw_values[key] = raw
            elif key in self.rejected:
                raise ConfigError(f"%{self.magic}: {self.rejected[key]}")
            elif self.extra_keys:
                parsed.extra[key] = raw
            else:
                raise ConfigError(
                    f"%{self.magic}: unknown option {key!r}{did_you_mean(key, self.options)}; "
                    f"see %{self.magic}? for the options"
                )
        for key, raw in raw_values.items():
            option = self.options[key]
            try:
                parsed.values[key] = option.type.parse(raw, namespace)
            except ValueError as exc:
                raise ConfigError(f"%{self.magic} {key}=: {exc}") from None
            parsed.given.add(key)
        for option in self.options.values():
            parsed.values.setdefault(option.name, option.default)
        return parsed

    def _is_flag(self, word: str) -> bool:
        option = self.options.get(word)
        return option is not None and option.flag

    def _positional(self, word: str, parsed: ParsedLine) -> None:
        if word in self.rejected:
            raise ConfigError(f"%{self.magic}: {self.rejected[word]}")
        if len(parsed.positional) < len(self.positional) and _IDENTIFIER.match(word):
            parsed.positional.append(word)
            return
        if word in self.options:
            raise ConfigError(f"%{self.magic}: option {word!r} needs a value: {word}=...")
        hint = did_you_mean(word, list(self.options))
        raise ConfigError(f"%{self.magic}: unexpected {word!r}{hint}; options are key=value")

    def help(self) -> str:
        """The option table shown by ``%magic?``."""
        width = max(len(name) for name in self.options) + 2
        lines = ["Options (key=value):"]
        for option in self.options.values():
            default = "" if option.default is None else f" (default: {option.default})"
            lines.append(f"  {option.name:<{width}}{option.type.description}{default}")
            if option.help:
                lines.append(f"  {'':<{width}}{option.help}")
        return "\n".join(lines)
