"""One place that turns errors into JSON API responses."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, InterfaceError, OperationalError
from redis.exceptions import RedisError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from common.errors import IdempotencyConflict


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            data: Any = {
                field: [str(m) for e in errors for m in e.messages] for field, errors in exc.error_dict.items()
            }
        else:
            data = {"non_field_errors": exc.messages}
        return Response(data, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, IdempotencyConflict):
        return Response({exc.field: [str(exc)]}, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
    if isinstance(exc, (OperationalError, InterfaceError, RedisError)):
        # A dependency is down: say so plainly and let the client retry. Nothing was committed, unless
        # the connection dropped while the commit's acknowledgement was on its way back (any write):
        # repeating is harmless for all but a create, a run-now and a retry, which their
        # Idempotency-Key covers (see the 503 text in common/api/schema.py).
        return Response(
            {"detail": "The service is temporarily unavailable; please retry shortly."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, DatabaseError):
        return Response({"detail": "The request could not be stored."}, status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)
