"""Error types that the API's exception handler maps, defined below the apps that raise them."""

from __future__ import annotations


class IdempotencyConflict(Exception):
    """An Idempotency-Key sent again with a different request: the API answers 422 on the header."""

    field = "Idempotency-Key"
