"""The path converter for object ids: `<id:order_id>` in a URL pattern.

Django's `int` converter takes digits of any length, and an id past the database's BIGINT would reach
the query (SQLite raises OverflowError, a 500). An id that cannot exist is simply not found: this
converter matches 1 to 19 ASCII digits and refuses 0 and values past 2**63 - 1, so such a path
matches no pattern and answers 404."""

from __future__ import annotations

from django.urls import register_converter

MAX_ID = 2**63 - 1


class IdConverter:
    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 1 <= number <= MAX_ID:
            raise ValueError("not an id")
        return number

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")
