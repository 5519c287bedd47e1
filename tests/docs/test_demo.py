"""`make demo` runs this tour: it must keep working and keep telling the truth."""

from __future__ import annotations

import re

import pytest

from oqc_style_sdk import demo


async def test_tour_prints_every_section(capsys: pytest.CaptureFixture[str]) -> None:
    await demo.tour()
    out = capsys.readouterr().out
    for section in (
        "1. A Bell pair",
        "2. Run it again",
        "3. A program",
        "4. A long job",
        "5. Save to disk",
        "6. A composite job",
    ):
        assert section in out
    # The Bell pair only ever measures 00 or 11, and its counts add up to the shots.
    bell = re.search(r"c: 00×(\d+)  11×(\d+)", out)
    assert bell is not None
    assert int(bell.group(1)) + int(bell.group(2)) == 1000
    assert "can only handle OpenQASM 2.0, but given 5.0" in out
    assert "after cancel_if_active(): CANCELLED" in out
    assert "mode 600" in out
    assert "summary: 3 COMPLETED, 1 FAILED" in out


def test_counts_formatting() -> None:
    assert demo.counts({"c": {"11": 2, "00": 3}}) == "c: 00×3  11×2"
    assert demo.counts([1, 2]) == "[1, 2]"
