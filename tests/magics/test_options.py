"""The magic-line grammar: tokens, option types, schemas and their help."""

from __future__ import annotations

import importlib
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbopt.errors import ConfigError
from nbopt.magics.option_types import (
    Bool,
    Duration,
    Enum,
    Expression,
    Float,
    Identifier,
    Int,
    Name,
    OneOf,
    Text,
    unquote,
)
from nbopt.magics.options import Option, ParsedLine, Schema, tokenize
from nbopt.space import Dimension


def _is_even(value: object) -> str | None:
    return None if isinstance(value, int) and value % 2 == 0 else "is not an even int"


NAMESPACE = {"model": object(), "sizes": [16, 32], "n": 4, "train": len, "tpe": "a variable"}

DEMO = Schema(
    "demo",
    [
        Option("max_evals", Int(1, 100), 20, "trials in all"),
        Option("ratio", Float(0, 1, exclusive=True), None, "a fraction"),
        Option("algo", Enum("tpe", "rand", "grid"), "tpe", "search algorithm"),
        Option("restart", Bool(), False, "start over", flag=True),
        Option("timeout", Duration(), None, "time budget"),
        Option("out", Identifier(), None, "result variable"),
        Option("keep", Identifier(many=True), None, "variables to keep"),
        Option("model", Name("an even int", _is_even), None, "a variable"),
        Option("lr", Expression(), None, "a dimension"),
        Option("batch", OneOf(Enum("auto"), Int(1)), "auto", "batch size"),
        Option("study", Text("path"), None, "a file"),
    ],
    positional=("objective",),
)


def _usage_error(line: str, namespace: dict | None = None, schema: Schema = DEMO) -> str:
    with pytest.raises(ConfigError) as info:
        schema.parse(line, NAMESPACE if namespace is None else namespace)
    message = str(info.value)
    assert "\n" not in message, "a ConfigError must be one line"
    return message


# --- tokenizer -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "tokens"),
    [
        (
            "train lr=loguniform(1e-4, 1e-1) layers=choice(1, 2, 3)",
            ["train", "lr=loguniform(1e-4, 1e-1)", "layers=choice(1, 2, 3)"],
        ),
        ('study="my runs/a b.json" out=r', ['study="my runs/a b.json"', "out=r"]),
        (
            "x=choice('a b', [1, (2, 3)], {'k': 1}) y=2",
            ["x=choice('a b', [1, (2, 3)], {'k': 1})", "y=2"],
        ),
        ('s="(" t=")"', ['s="("', 't=")"']),
        (r's="a \" b" t=1', [r's="a \" b"', "t=1"]),
        ("  \t a=1 \t  b=2  ", ["a=1", "b=2"]),
        ("", []),
        ("   ", []),
        ("x=f(a,\tb)", ["x=f(a,\tb)"]),
        ("mode=max restart", ["mode=max", "restart"]),
    ],
)
def test_tokenize_splits_on_whitespace_outside_quotes_and_brackets(
    line: str, tokens: list[str]
) -> None:
    """Whitespace separates tokens only outside quotes and (nested) brackets."""
    assert tokenize(line) == tokens


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("x=(1, 2", "unclosed '('"),
        ("x=1)", "unbalanced ')'"),
        ("x=(1]", "unbalanced ']'"),
        ('s="abc', "unclosed quote"),
        ("s='abc\\'", "unclosed quote"),
    ],
)
def test_tokenize_rejects_unbalanced_input(line: str, fragment: str) -> None:
    """Unbalanced brackets or quotes are an error naming the problem (a ConfigError via Schema)."""
    with pytest.raises(ValueError, match=re.escape(fragment)):
        tokenize(line)
    with pytest.raises(ConfigError, match=r"^%demo: .*" + re.escape(fragment)):
        Schema("demo", [Option("x", Text()), Option("s", Text())]).parse(line)


def test_unquote_removes_one_matching_pair_only() -> None:
    """Quotes come off as a shell would take them off, and only when they match."""
    assert unquote('"a b"') == "a b"
    assert unquote("'x'") == "x"
    assert unquote("\"'x'\"") == "'x'"
    assert unquote("'x\"") == "'x\""
    assert unquote('"') == '"'
    assert unquote("plain") == "plain"


# --- option types ----------------------------------------------------------------------------


def test_int_parses_integers_in_range() -> None:
    """Int accepts integers (underscores, quotes) within its bounds and nothing else."""
    option = Int(1, 100)
    assert option.parse("5", {}) == 5
    assert option.parse('"7"', {}) == 7
    assert Int().parse("1_000", {}) == 1000
    assert Int().parse("-3", {}) == -3
    for bad in ("0", "101", "2.5", "abc", "", "1e3"):
        with pytest.raises(ValueError):
            option.parse(bad, {})
    assert option.description == "int in [1, 100]"
    assert Int(1).description == "int >= 1"


def test_int_range_error_reaches_the_user_as_usage_error() -> None:
    """An out-of-range value names the option, its range and the value given."""
    message = _usage_error("max_evals=0")
    assert "max_evals" in message
    assert "[1, 100]" in message
    assert "0" in message


def test_float_parses_finite_numbers_in_range() -> None:
    """Float accepts finite numbers, honouring an exclusive range."""
    option = Float(0, 1, exclusive=True)
    assert option.parse("0.5", {}) == 0.5
    assert option.parse("1e-3", {}) == 0.001
    for bad in ("0", "1", "nan", "inf", "-inf", "x", "1.5"):
        with pytest.raises(ValueError):
            option.parse(bad, {})
    assert option.description == "number in (0, 1)"
    assert Float(0).parse("0", {}) == 0.0


@pytest.mark.parametrize("word", ["true", "True", "YES", "1", "on"])
def test_bool_true_words(word: str) -> None:
    """Every documented true word, in any case, is True."""
    assert Bool().parse(word, {}) is True


@pytest.mark.parametrize("word", ["false", "False", "no", "0", "OFF", "'no'"])
def test_bool_false_words(word: str) -> None:
    """Every documented false word, in any case and quoted, is False."""
    assert Bool().parse(word, {}) is False


@pytest.mark.parametrize("word", ["maybe", "", "2", "tru"])
def test_bool_rejects_other_words(word: str) -> None:
    """Anything else is an error, never silently truthy."""
    with pytest.raises(ValueError, match="True or False"):
        Bool().parse(word, {})


def test_enum_is_literal_and_suggests_a_close_choice() -> None:
    """Enum values are literals (never variables) and a typo gets a "did you mean"."""
    option = Enum("tpe", "rand", "grid")
    assert option.parse("grid", {"grid": 5}) == "grid"
    assert option.parse('"rand"', {}) == "rand"
    with pytest.raises(ValueError, match=r"did you mean tpe\?"):
        option.parse("tpee", {})
    with pytest.raises(ValueError, match=r"tpe\|rand\|grid") as info:
        option.parse("zzz", {})
    assert "did you mean" not in str(info.value)
    assert DEMO.parse("algo=tpe", NAMESPACE)["algo"] == "tpe"  # NAMESPACE has a variable tpe


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("90", 90),
        ("30s", 30),
        ("5m", 300),
        ("10min", 600),
        ("2h", 7200),
        ("1.5h", 5400),
        ("0.5", 0.5),
        ('"5 m"', 300),
    ],
)
def test_duration_units(raw: str, seconds: float) -> None:
    """Durations are seconds, or a number with s, m, min or h."""
    assert Duration().parse(raw, {}) == seconds


@pytest.mark.parametrize("raw", ["0", "0s", "-5", "5x", "m", "", "5 hours", "1d"])
def test_duration_rejects_bad_or_zero_values(raw: str) -> None:
    """A duration must be positive and use a known unit."""
    with pytest.raises(ValueError):
        Duration().parse(raw, {})


def test_identifier_single_and_many() -> None:
    """Identifier takes one Python name, or a comma list with ``many``."""
    assert Identifier().parse("result_1", {}) == "result_1"
    assert Identifier(many=True).parse("a, b,c", {}) == ("a", "b", "c")
    assert Identifier(many=True).parse("a", {}) == ("a",)
    for bad in ("1x", "a-b", "a,b", "", "a b"):
        with pytest.raises(ValueError):
            Identifier().parse(bad, {})
    with pytest.raises(ValueError, match="not a valid Python name"):
        Identifier(many=True).parse("a,,b", {})


def test_name_looks_the_variable_up_and_validates_it() -> None:
    """Name returns the notebook's object, suggests close names and applies its check."""
    namespace = {"model": 4, "modal_x": 1, "odd": 3, "_private": 2}
    option = Name("an even int", _is_even)
    assert option.parse("model", namespace) == 4
    with pytest.raises(ValueError, match=r"not defined in the notebook \(did you mean model\?\)"):
        option.parse("modle", namespace)
    with pytest.raises(ValueError, match="'odd' is not an even int"):
        option.parse("odd", namespace)
    with pytest.raises(ValueError, match="name of a variable"):
        option.parse("model.x", namespace)
    with pytest.raises(ValueError) as info:
        option.parse("_privat", namespace)
    assert "did you mean" not in str(info.value)  # private names are never suggested


def test_expression_is_evaluated_with_space_functions_in_scope() -> None:
    """Expressions see the notebook's variables and nbopt's space functions."""
    value = Expression().parse("choice(*sizes)", NAMESPACE)
    assert isinstance(value, Dimension)
    assert value.kind == "choice"
    assert value.args == (16, 32)
    lr = Expression().parse("loguniform(1e-4, 1e-1)", {})
    assert (lr.kind, lr.args) == ("loguniform", (1e-4, 1e-1))
    assert Expression().parse("n * 2", NAMESPACE) == 8
    with pytest.raises(ValueError, match="cannot evaluate 'nope \\+ 1': NameError"):
        Expression().parse("nope + 1", {})
    with pytest.raises(ValueError, match="SyntaxError"):
        Expression().parse("1 +", {})
    with pytest.raises(ValueError, match="ConfigError"):
        Expression().parse("uniform(1, 0)", {})


def test_one_of_takes_the_first_type_that_accepts() -> None:
    """OneOf tries its types in order and describes them all when none fits."""
    option = OneOf(Enum("auto"), Int(1))
    assert option.parse("auto", {}) == "auto"
    assert option.parse("64", {}) == 64
    with pytest.raises(ValueError, match="expected auto or int >= 1, got 'x'"):
        option.parse("x", {})
    with pytest.raises(ValueError):
        option.parse("0", {})


# --- schemas ---------------------------------------------------------------------------------


def test_schema_parses_every_type_and_fills_defaults() -> None:
    """A full line gives typed values; options not given keep their defaults."""
    parsed = DEMO.parse(
        "train max_evals=40 ratio=0.25 algo=rand restart timeout=5m out=best "
        "keep=a,b model=n lr=loguniform(1e-4, 1e-1) batch=64 study='runs/x y.json'",
        NAMESPACE,
    )
    assert isinstance(parsed, ParsedLine)
    assert parsed.positional == ["train"]
    assert parsed["max_evals"] == 40
    assert parsed["ratio"] == 0.25
    assert parsed["algo"] == "rand"
    assert parsed["restart"] is True
    assert parsed["timeout"] == 300
    assert parsed["out"] == "best"
    assert parsed["keep"] == ("a", "b")
    assert parsed["model"] == 4
    assert parsed["lr"].kind == "loguniform"
    assert parsed["batch"] == 64
    assert parsed["study"] == "runs/x y.json"
    assert parsed.given == set(DEMO.options)

    empty = DEMO.parse("", NAMESPACE)
    assert empty.given == set()
    assert empty.values == {name: option.default for name, option in DEMO.options.items()}


@pytest.mark.parametrize(
    ("line", "suggestion"),
    [("max_eval=3", "max_evals"), ("algos=tpe", "algo"), ("restrat=1", "restart")],
)
def test_unknown_key_suggests_the_closest_option(line: str, suggestion: str) -> None:
    """An unknown key is a ConfigError naming it, a close option and where to look."""
    message = _usage_error(line)
    assert message.startswith("%demo")
    assert repr(line.split("=")[0]) in message
    assert f"did you mean {suggestion}?" in message
    assert "%demo?" in message


def test_unknown_far_key_has_no_suggestion() -> None:
    """A key like no option gets no misleading suggestion."""
    assert "did you mean" not in _usage_error("zzzzzz=1")


@pytest.mark.parametrize(
    "line",
    [
        "max_evals=3 max_evals=4",
        "algo=tpe algo=tpe",
        "restart restart",
        "restart restart=no",
        "restart=no restart",
    ],
)
def test_duplicate_key_is_an_error(line: str) -> None:
    """An option given twice, as key=value or as a flag, in either order, is a ConfigError."""
    assert "given twice" in _usage_error(line)


def test_extra_keys_are_returned_raw_and_checked_for_duplicates() -> None:
    """With ``extra_keys`` unknown pairs are kept unevaluated; a repeated one is an error."""
    schema = Schema(
        "tune", [Option("max_evals", Int(1))], positional=("objective",), extra_keys=True
    )
    parsed = schema.parse("train lr=loguniform(1e-4, 1e-1) layers=choice(1,2) max_evals=3", {})
    assert parsed.extra == {"lr": "loguniform(1e-4, 1e-1)", "layers": "choice(1,2)"}
    assert parsed["max_evals"] == 3
    assert "given twice" in _usage_error("lr=1 lr=2", {}, schema)


def test_bare_flags_and_positional_names() -> None:
    """A flag given bare is True; bare names fill the positional slots, in order, no more."""
    parsed = DEMO.parse("restart train", NAMESPACE)
    assert parsed["restart"] is True
    assert parsed.positional == ["train"]
    assert "unexpected 'other'" in _usage_error("train other")
    assert "option 'algo' needs a value: algo=..." in _usage_error("train algo")  # not a flag
    assert "unexpected '1x'" in _usage_error("1x")
    message = _usage_error("train restrat")
    assert "did you mean restart?" in message


@pytest.mark.parametrize("token", ["=5", "1a=2", "a.b=3", "'q'=1", "é=1"])
def test_key_must_be_an_identifier(token: str) -> None:
    """A ``key=value`` whose key is not a Python name is rejected as malformed."""
    assert "not of the form key=value" in _usage_error(token)


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("ratio=1", "%demo ratio=: expected a value in (0, 1)"),
        ("algo=tpee", "did you mean tpe?"),
        ("timeout=5x", "%demo timeout=: expected a duration"),
        ("out=1x", "'1x' is not a valid Python name"),
        ("model=missing", "'missing' is not defined in the notebook"),
        ("model=model", "'model' is not an even int"),
        ("lr=undefined_fn(1)", "cannot evaluate"),
        ("batch=0", "expected auto or int >= 1"),
    ],
)
def test_bad_values_name_the_option(line: str, fragment: str) -> None:
    """Each type's error reaches the user as a one-line ConfigError with the option's name."""
    assert fragment in _usage_error(line)


def test_help_lists_every_option_with_type_default_and_meaning() -> None:
    """``Schema.help`` shows each option's name, type, default and help text."""
    text = DEMO.help()
    lines = text.splitlines()
    assert lines[0] == "Options (key=value):"
    for option in DEMO.options.values():
        row = next(line for line in lines if line.split() and line.split()[0] == option.name)
        assert option.type.description in row
        if option.default is not None:
            assert f"(default: {option.default})" in row
        else:
            assert "default" not in row
        assert option.help in text


def test_tune_schema_help_lists_every_option() -> None:
    """The %tune help shows every option of the %tune schema with its type."""
    from nbopt.magics.tune import HELP, SCHEMA

    for option in SCHEMA.options.values():
        assert f"  {option.name} " in HELP
        assert option.type.description in HELP


# --- property test: any line either parses or is a ConfigError --------------------------------

# Every magic's schema, by the module that defines it; add new magics here.
MAGIC_SCHEMA_MODULES = [
    "nbopt.magics.tune",
    "nbopt.magics.optimize",
    "nbopt.magics.optimize_auto",
    "nbopt.magics.batchsize",
    "nbopt.magics.accelerate",
]


def _schemas() -> list:
    params = []
    for module_name in MAGIC_SCHEMA_MODULES:
        schema = importlib.import_module(module_name).SCHEMA
        params.append(pytest.param(schema, id=schema.magic))
    params.append(pytest.param(DEMO, id="every-option-type"))
    return params


# fmt: off
_NEAR_MISSES = [
    "max_eval", "maxevals", "algos", "Mode", "seeed", "out_", "timeot", "restrat", "lr", "layers",
    "x", "_", "a1", "1a", "é", "", "metric_", "Space",
]
_VALUES = [
    "10", "0", "-1", "1e3", "1_000", "3.5", "tpe", "grid", "gird", "max", "30s", "5m", "2h", "0s",
    "yes", "maybe", "true", "model", "sizes", "n", "undefined", "None", "", "a,b", "choice(1, 2)",
    "loguniform(1e-4, 1e-1)", "uniform(1, 0)", "[1, 2]", "{'a': 1}", "runs/x.json", "λ", "∞",
    "nan", "inf",
]
# fmt: on
# No '*' or '<': an expression option evaluates what it is given, and ``9**9**9`` would hang.
_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="*<") | st.sampled_from(
    list("=\"'()[]{},. \t\\")
)


def _line_strategy(schema: Schema) -> st.SearchStrategy[str]:
    keys = st.sampled_from([*sorted(schema.options), *_NEAR_MISSES]) | st.text(_CHARS, max_size=6)
    raw_values = st.sampled_from(_VALUES) | st.text(_CHARS, max_size=12)
    values = st.one_of(
        raw_values,
        raw_values.map(lambda v: f'"{v}"'),
        raw_values.map(lambda v: f"'{v}'"),
        raw_values.map(lambda v: f"({v})"),
        raw_values.map(lambda v: f"[{v}"),
    )
    pairs = st.builds(lambda k, v: f"{k}={v}", keys, values)
    bare = st.sampled_from([*sorted(schema.options), "train", "restart", "=", "==", "a=b=c"])
    token = st.one_of(pairs, pairs, bare, st.text(_CHARS, max_size=10))
    separators = st.sampled_from([" ", "  ", "\t", " \u3000 ", ""])
    return st.lists(st.tuples(token, separators), max_size=6).map(
        lambda parts: "".join(t + s for t, s in parts)
    )


@pytest.mark.parametrize("schema", _schemas())
def test_any_line_parses_or_is_a_usage_error(schema: Schema) -> None:
    """No input line makes a schema raise anything but nbopt's ConfigError (which the magics
    show as IPython's one-line UsageError)."""

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(line=_line_strategy(schema))
    def check(line: str) -> None:
        try:
            parsed = schema.parse(line, NAMESPACE)
        except ConfigError as exc:
            assert str(exc)
            return
        assert set(parsed.values) >= set(schema.options)
        assert parsed.given <= set(schema.options)
        assert len(parsed.positional) <= len(schema.positional)

    check()
