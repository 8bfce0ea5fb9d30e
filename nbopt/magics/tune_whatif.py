"""``%tune_whatif``: the what-if explorer of a search's result."""

from __future__ import annotations

from typing import Any

from nbopt.magics.option_types import Name
from nbopt.magics.options import Schema
from nbopt.magics.runner import MagicCall

HELP = """Explore what a finished search learnt: its model's prediction anywhere in the space.

    %tune_whatif            the result of the last %tune or %%tune of this session
    %tune_whatif result     a TuneResult of the notebook (out=result, or nbopt.tune's)

Shows result.whatif(): a slider or dropdown per parameter, the predicted metric (every metric,
with several objectives) with a band of one standard deviation, the partial dependence of the
metric on each parameter with the tried trials, and "run this configuration", which runs the
setting as one more trial of the same search. Without a widget front end, the same numbers as
text. result.predict(params) gives a prediction in code.
"""

SCHEMA = Schema("tune_whatif", [], positional=("result",))


def run(magics: Any, line: str) -> Any:
    """Parse ``%tune_whatif``; return the explorer of the result it names, or of the last
    ``%tune`` run of the session."""
    call = MagicCall(magics, SCHEMA, line)
    if call.parsed.positional:
        try:
            result = Name("TuneResult", _tune_result_check).parse(
                call.parsed.positional[0], call.namespace
            )
        except ValueError as exc:
            raise call.fail(str(exc)) from None
    else:
        result = magics.last_results.get("tune")
        if result is None:
            raise call.fail(
                "no %tune has run in this session: run one, or name a result, e.g. "
                "%tune_whatif result"
            )
    with call.usage_errors():
        return result.whatif()


def _tune_result_check(value: Any) -> str | None:
    from nbopt.tuning import TuneResult

    if isinstance(value, TuneResult):
        return None
    kind = type(value).__name__
    article = "an" if kind[:1].lower() in "aeiou" else "a"
    return f"is {article} {kind}, not a TuneResult (what %tune and nbopt.tune return)"
