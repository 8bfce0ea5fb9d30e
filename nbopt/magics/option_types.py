"""The types of magic options: how a raw ``key=value`` value becomes a Python value.

Each type raises ValueError with a message that says what was expected; the option grammar
(:mod:`nbopt.magics.options`) turns it into a one-line error naming the option.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from nbopt.errors import did_you_mean
from nbopt.units import parse_duration, parse_size

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


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


class EnumList(OptionType):
    """One or more of ``choices``, comma-separated: ``mode=max`` is ``"max"``, ``mode=max,min``
    is ``("max", "min")``."""

    def __init__(self, *choices: str) -> None:
        self.choices = choices
        self.description = "|".join(choices) + "[,...]"

    def parse(self, raw: str, namespace: Mapping[str, Any]) -> str | tuple[str, ...]:
        words = tuple(word.strip() for word in unquote(raw).split(","))
        for word in words:
            if word not in self.choices:
                hint = did_you_mean(word, self.choices)
                raise ValueError(f"expected {self.description}, got {raw!r}{hint}")
        return words[0] if len(words) == 1 else words


class Duration(OptionType):
    """Seconds, as a number or with a unit: ``90``, ``30s``, ``5m``, ``2h``."""

    description = "seconds (or 30s, 5m, 2h)"

    def parse(self, raw: str, namespace: Mapping[str, Any]) -> float:
        return parse_duration(unquote(raw))


class Size(OptionType):
    """A number of bytes, with an optional unit: ``4GB``, ``512MB``, ``1.5GiB``, ``1000000``."""

    description = "bytes (or 512MB, 4GB)"

    def parse(self, raw: str, namespace: Mapping[str, Any]) -> int:
        return parse_size(unquote(raw))


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
