"""The CLI's tables on a terminal: styled and fitted to its width, no value cut short."""

from __future__ import annotations

import io
import re

import pytest

from modelreg.cli.common import table

HEADERS = ["id", "version", "f1 wine-holdout@1 (reported)", "sha256", "params", "created"]
PARAMS = {"n_estimators": 100, "max_features": "sqrt"}
ROWS = [[7, "1.0", 0.9775, "7b14e2d92338", PARAMS, "2026-12-06T22:41:15Z"]]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def shown(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


# Each column's longest word, two spaces apart: the narrowest the table can be drawn
# without cutting a value.
LONGEST = ["id", "version", "wine-holdout@1", "7b14e2d92338", "max_features=sqrt", ROWS[0][5]]
NARROWEST = len("  ".join(map(str, LONGEST)))


def test_on_a_wide_terminal_a_table_is_one_line_per_row_with_bold_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdout", Terminal())
    monkeypatch.setenv("COLUMNS", "200")
    drawn = table(HEADERS, ROWS)
    assert "\x1b[1m" in drawn
    header, row = shown(drawn).splitlines()
    assert re.split(r"\s{2,}", header.strip()) == HEADERS
    assert "n_estimators=100 max_features=sqrt" in row


@pytest.mark.parametrize("columns", [100, 60])
def test_on_a_narrow_terminal_free_text_and_headers_wrap_and_no_value_is_cut(
    monkeypatch: pytest.MonkeyPatch, columns: int
) -> None:
    monkeypatch.setattr("sys.stdout", Terminal())
    monkeypatch.setenv("COLUMNS", str(columns))
    text = shown(table(HEADERS, ROWS))
    for whole in ("7b14e2d92338", "2026-12-06T22:41:15Z", "0.9775", "max_features=sqrt"):
        assert whole in text, text
    assert "…" not in text
    widest = max(len(line.rstrip()) for line in text.splitlines())
    # Fitted to the terminal, or, when even that is too narrow, to the longest words
    # (the terminal then wraps the lines rather than a value being cut).
    assert widest <= columns if columns >= NARROWEST else widest == NARROWEST, text


def test_in_a_pipe_a_table_is_plain_one_line_per_row_however_wide(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdout", io.StringIO())
    monkeypatch.setenv("COLUMNS", "40")
    text = table(HEADERS, ROWS * 3)
    assert "\x1b" not in text
    header, *rows = text.splitlines()
    assert re.split(r"\s{2,}", header) == HEADERS
    assert rows == [rows[0]] * 3 and "n_estimators=100 max_features=sqrt" in rows[0]
