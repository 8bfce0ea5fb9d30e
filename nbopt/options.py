"""The option grammar shared by every nbopt magic.

A magic line is a sequence of tokens separated by whitespace outside quotes and brackets:
``key=value`` pairs and bare words (a positional name, or a flag such as ``auto``). Each magic
declares its options in a :class:`Schema`; a value is parsed by its option's type:

* numbers, booleans, enumerations, text and paths are literals (``quant=int8`` is the string
  ``"int8"``, never a variable);
* a *name* option (``model=net``) looks the name up in the notebook's namespace;
* an *expression* option (``lr=loguniform(1e-4, 1e-1)``) is evaluated in the notebook's
  namespace with nbopt's space functions in scope.

Any problem raises IPython's ``UsageError`` with one line that says what was wrong, before
anything runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from IPython.core.error import UsageError

from nbopt.errors import did_you_mean

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {v: k for k, v in _OPEN.items()}
_NOT_GIVEN: Any = object()


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


def unquote(text: str) -> str:
    """Remove one pair of matching surrounding quotes, as a shell would."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


class OptionType:
    """How a raw option value becomes a Python value. Subclasses override ``parse``."""

    description = "text"

    def parse(self, raw: str, namespace: Mapping[str, Any]) -> Any:
        return unquote(raw)


class Text(OptionType):
    def __init__(self, description: str = "text") -> None:
        self.description = description


class Int(OptionType):
    def __init__(self, minimum: int | None = None, maximum: int | None = None) -> None:
        self.minimum, self.maximum = minimum, maximum
        self.description = "int" + _range_text(minimum, maximum)

    def parse(self, raw: str, namespace: Mapping[str, Any]) -> int:
        text = unquote(raw).replace("_", "")
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {raw!r}") from None
        _check_range(value, self.minimum, self.maximum)
        return value


class Float(OptionType):
    def __init__(
        self,
        minimum: float | None = None,
        maximum: float | None = None,
        *,
        exclusive: bool = False,
    ) -> None:
        self.minimum, self.maximum, self.exclusive = minimum, maximum, exclusive
        self.description = "number" + _range_text(minimum, maximum, exclusive)

    def parse(self, raw: str, namespace: Mapping[str, Any]) -> float:
        try:
            value = float(unquote(raw))
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {raw!r}")
        _check_range(value, self.minimum, self.maximum, self.exclusive)
        return value


class Bool(OptionType):
    description = "bool"
    _WORDS: ClassVar[dict[str, bool]] = {
        "true": True,
        "yes": True,
        "1": True,
        "on": True,
        "false": False,
        "no": False,
        "0": False,
        "off": False,
    }

    def parse(self, raw: str, namespace: Mapping[str, Any]) -> bool:
        value = self._WORDS.get(unquote(raw).lower())
        if value is None:
            raise ValueError(f"expected True or False, got {raw!r}")
        return value


class Enum(OptionType):
    def __init__(self, *choices: str) -> None:
        self.choices = choices
        self.description = "|".join(choices)

    def parse(self, raw: str, namespace: Mapping[str, Any]) -> str:
        value = unquote(raw)
        if value not in self.choices:
            hint = did_you_mean(value, self.choices)
            raise ValueError(f"expected one of {self.description}, got {raw!r}{hint}")
        return value


class Duration(OptionType):
    """Seconds, as a number or with a unit: ``90``, ``30s``, ``5m``, ``2h``."""

    description = "seconds (or 30s, 5m, 2h)"
    _UNITS: ClassVar[dict[str, int]] = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600}

    def parse(self, raw: str, namespace: Mapping[str, Any]) -> float:
        match = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)", unquote(raw))
        if not match or match.group(2) not in self._UNITS:
            raise ValueError(f"expected a duration such as 600, 30s, 5m or 2h, got {raw!r}")
        seconds = float(match.group(1)) * self._UNITS[match.group(2)]
        if seconds <= 0:
            raise ValueError(f"expected a positive duration, got {raw!r}")
        return seconds


class Size(OptionType):
    """A number of bytes, with an optional unit: ``4GB``, ``512MB``, ``1.5GiB``, ``1000000``."""

    description = "bytes (or 512MB, 4GB)"
    _UNITS: ClassVar[dict[str, int]] = {
        "": 1,
        "b": 1,
        "kb": 10**3,
        "mb": 10**6,
        "gb": 10**9,
        "tb": 10**12,
        "kib": 2**10,
        "mib": 2**20,
        "gib": 2**30,
        "tib": 2**40,
    }

    def parse(self, raw: str, namespace: Mapping[str, Any]) -> int:
        match = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)", unquote(raw).strip())
        unit = match.group(2).lower() if match else ""
        if not match or unit not in self._UNITS:
            raise ValueError(f"expected a size such as 4GB or 512MB, got {raw!r}")
        size = int(float(match.group(1)) * self._UNITS[unit])
        if size <= 0:
            raise ValueError(f"expected a positive size, got {raw!r}")
        return size


class TextList(OptionType):
    """Comma-separated words, such as module paths: ``prune_ignore=fc,layer4.0.conv1``."""

    def __init__(self, description: str = "word[,word...]") -> None:
        self.description = description

    def parse(self, raw: str, namespace: Mapping[str, Any]) -> tuple[str, ...]:
        words = tuple(word.strip() for word in unquote(raw).split(",") if word.strip())
        if not words:
            raise ValueError(f"expected one or more comma-separated words, got {raw!r}")
        return words


class Identifier(OptionType):
    """A Python identifier, or a comma-separated list of them when ``many`` is set."""

    def __init__(self, many: bool = False) -> None:
        self.many = many
        self.description = "name[,name...]" if many else "name"

    def parse(self, raw: str, namespace: Mapping[str, Any]) -> str | tuple[str, ...]:
        names = tuple(part.strip() for part in unquote(raw).split(","))
        for name in names:
            if not _IDENTIFIER.match(name):
                raise ValueError(f"{name!r} is not a valid Python name")
        if not self.many and len(names) != 1:
            raise ValueError(f"expected one name, got {raw!r}")
        return names if self.many else names[0]


class Name(OptionType):
    """A variable of the notebook, looked up by name; ``check`` validates the object."""

    def __init__(
        self,
        description: str = "variable",
        check: Callable[[Any], str | None] | None = None,
    ) -> None:
        self.description = description
        self.check = check

    def parse(self, raw: str, namespace: Mapping[str, Any]) -> Any:
        name = unquote(raw)
        if not _IDENTIFIER.match(name):
            raise ValueError(f"expected the name of a variable, got {raw!r}")
        if name not in namespace:
            hint = did_you_mean(name, [k for k in namespace if not k.startswith("_")])
            raise ValueError(f"name {name!r} is not defined in the notebook{hint}")
        value = namespace[name]
        problem = self.check(value) if self.check else None
        if problem:
            raise ValueError(f"{name!r} {problem}")
        return value


class Expression(OptionType):
    """A Python expression evaluated in the notebook namespace, space functions in scope."""

    description = "expression"

    def parse(self, raw: str, namespace: Mapping[str, Any]) -> Any:
        return evaluate_expression(raw, namespace)


class OneOf(OptionType):
    """The first of several types that accepts the value (``batch=auto`` or ``batch=64``)."""

    def __init__(self, *types: OptionType) -> None:
        self.types = types
        self.description = " or ".join(t.description for t in types)

    def parse(self, raw: str, namespace: Mapping[str, Any]) -> Any:
        for option_type in self.types:
            try:
                return option_type.parse(raw, namespace)
            except ValueError:
                continue
        raise ValueError(f"expected {self.description}, got {raw!r}")


def evaluate_expression(source: str, namespace: Mapping[str, Any]) -> Any:
    """Evaluate ``source`` in ``namespace`` with the space functions available."""
    from nbopt import space

    scope = {name: getattr(space, name) for name in space.SPACE_FUNCTIONS}
    scope.update(namespace)
    try:
        return eval(compile(source, "<option>", "eval"), scope)
    except Exception as exc:
        raise ValueError(f"cannot evaluate {source!r}: {type(exc).__name__}: {exc}") from None


def _range_text(low: float | None, high: float | None, exclusive: bool = False) -> str:
    if low is not None and high is not None:
        brackets = "()" if exclusive else "[]"
        return f" in {brackets[0]}{low}, {high}{brackets[1]}"
    if low is not None:
        return f" {'>' if exclusive else '>='} {low}"
    if high is not None:
        return f" {'<' if exclusive else '<='} {high}"
    return ""


def _check_range(
    value: float, low: float | None, high: float | None, exclusive: bool = False
) -> None:
    too_low = low is not None and (value <= low if exclusive else value < low)
    too_high = high is not None and (value >= high if exclusive else value > high)
    if too_low or too_high:
        raise ValueError(f"expected a value{_range_text(low, high, exclusive)}, got {value}")


@dataclass(frozen=True)
class Option:
    """One option of a magic: its name, type, default and meaning (shown by ``%magic?``)."""

    name: str
    type: OptionType
    default: Any = None
    help: str = ""
    flag: bool = False  # may be given as a bare word, meaning True


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
    """

    def __init__(
        self,
        magic: str,
        options: Sequence[Option],
        positional: Sequence[str] = (),
        extra_keys: bool = False,
    ) -> None:
        self.magic = magic
        self.options = {option.name: option for option in options}
        self.positional = tuple(positional)
        self.extra_keys = extra_keys

    def parse(self, line: str, namespace: Mapping[str, Any] | None = None) -> ParsedLine:
        """Parse a magic line; raises ``UsageError`` on any problem."""
        namespace = {} if namespace is None else namespace
        parsed = ParsedLine(values={}, given=set())
        raw_values: dict[str, str] = {}
        try:
            tokens = tokenize(line)
        except ValueError as exc:
            raise UsageError(f"%{self.magic}: {exc}") from None
        for token in tokens:
            key, sep, raw = token.partition("=")
            if not sep:
                if self._is_flag(token):
                    key, raw = token, "true"
                else:
                    self._positional(token, parsed)
                    continue
            if not _IDENTIFIER.match(key):
                raise UsageError(f"%{self.magic}: {token!r} is not of the form key=value")
            if key in raw_values or key in parsed.extra:
                raise UsageError(f"%{self.magic}: option {key!r} is given twice")
            if key in self.options:
                raw_values[key] = raw
            elif self.extra_keys:
                parsed.extra[key] = raw
            else:
                raise UsageError(
                    f"%{self.magic}: unknown option {key!r}{did_you_mean(key, self.options)}; "
                    f"see %{self.magic}? for the options"
                )
        for key, raw in raw_values.items():
            option = self.options[key]
            try:
                parsed.values[key] = option.type.parse(raw, namespace)
            except ValueError as exc:
                raise UsageError(f"%{self.magic} {key}=: {exc}") from None
            parsed.given.add(key)
        for option in self.options.values():
            parsed.values.setdefault(option.name, option.default)
        return parsed

    def _is_flag(self, word: str) -> bool:
        option = self.options.get(word)
        return option is not None and option.flag

    def _positional(self, word: str, parsed: ParsedLine) -> None:
        if len(parsed.positional) < len(self.positional) and _IDENTIFIER.match(word):
            parsed.positional.append(word)
            return
        if word in self.options:
            raise UsageError(f"%{self.magic}: option {word!r} needs a value: {word}=...")
        hint = did_you_mean(word, list(self.options))
        raise UsageError(f"%{self.magic}: unexpected {word!r}{hint}; options are key=value")

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
