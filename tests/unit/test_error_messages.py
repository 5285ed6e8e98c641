"""The 422 messages rephrase marshmallow's own words: those words are still marshmallow's."""

from __future__ import annotations

import marshmallow as ma

from modelreg.errors import LIBRARY_PHRASES


def test_the_rephrased_library_messages_are_the_ones_marshmallow_writes() -> None:
    written = {
        ma.fields.Field.default_error_messages["required"],
        ma.fields.Field.default_error_messages["null"],
        ma.Schema._default_error_messages["unknown"],
    }
    assert set(LIBRARY_PHRASES) == written
