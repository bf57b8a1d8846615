"""The API's JSON parser: DRF's, with clear answers to hostile bodies.

- A deeply nested document makes json raise RecursionError, not ValueError, and DRF's JSONParser
  lets it through as a 500: here it is a 400 like any other malformed body.
- DRF reads a JSONParser's body through request.body, where Django's DATA_UPLOAD_MAX_MEMORY_SIZE
  check raises RequestDataTooBig, which ends as a bare "Bad request.". This parser is not a
  JSONParser subclass, so DRF hands it the stream: it refuses a body over the same limit with a 413
  that says so, before reading a byte of it, then reads at most the limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer
from rest_framework.settings import api_settings
from rest_framework.utils import json


class RequestBodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


def _encoding(parser_context: Mapping[str, Any]) -> str:
    encoding = str(parser_context.get("encoding") or settings.DEFAULT_CHARSET)
    try:
        # str.encode() accepts text codecs only: a "charset=bz2_codec" must not decompress the body.
        "".encode(encoding)
    except (LookupError, UnicodeError) as exc:
        raise ParseError(f"Unsupported charset {encoding!r} in the Content-Type header.") from exc
    return encoding


def _declared_length(parser_context: Mapping[str, Any]) -> int:
    request = parser_context.get("request")
    meta = getattr(request, "META", {})
    try:
        return int(meta.get("CONTENT_LENGTH") or 0)
    except (TypeError, ValueError):
        return 0


class BoundedJSONParser(BaseParser):
    media_type = "application/json"
    renderer_class = JSONRenderer
    strict = api_settings.STRICT_JSON

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        parser_context = parser_context or {}
        limit: int | None = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and _declared_length(parser_context) > limit:
            # Refuse before reading a byte: memory stays flat whatever the client announces.
            raise RequestBodyTooLarge(f"The request body is larger than {limit} bytes.")
        raw = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(raw) > limit:
            raise RequestBodyTooLarge(f"The request body is larger than {limit} bytes.")
        encoding = _encoding(parser_context)
        try:
            text = raw.decode(encoding)
            # NaN, Infinity and -Infinity are not JSON (RFC 8259), whatever Python's json module accepts.
            return json.loads(text, parse_constant=json.strict_constant if self.strict else None)
        except RecursionError as exc:
            raise ParseError("JSON parse error - the document is nested too deeply.") from exc
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
