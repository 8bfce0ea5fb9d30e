"""Sizes and durations, read the same way by the magics' options and by the engines."""

from __future__ import annotations

import pytest

from nbopt.units import format_bytes, format_rate, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [("4GB", 4 * 10**9), ("512MB", 512 * 10**6), ("1.5GiB", 3 * 2**29), ("1000", 1000)],
)
def test_sizes_in_decimal_and_binary_units(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("text", "seconds"), [("90", 90.0), ("30s", 30.0), ("5m", 300.0)])
def test_durations_with_or_without_a_unit(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["lots", "4XB", "0GB", "-1", ""])
def test_a_size_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


@pytest.mark.parametrize("text", ["soon", "5d", "0s", "-3m"])
def test_a_duration_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_printed_forms_read_back_as_the_same_size() -> None:
    assert format_bytes(1_500_000) == "1.5 MB" and parse_size("1.5MB") == 1_500_000
    assert format_bytes(None) == "n/a" and format_rate(31_250.4) == "31,250"
    assert format_rate(0.52) == "0.52"


def test_the_grammar_and_the_engines_share_the_parser() -> None:
    """``%batchsize memory=4GB`` and ``find_batch_size(memory="4GB")`` read the same bytes."""
    from nbopt.magics.option_types import Size

    assert Size().parse("'1.5GiB'", {}) == parse_size("1.5GiB")
