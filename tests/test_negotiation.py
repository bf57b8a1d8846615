"""FastContentNegotiation chooses what DRF's DefaultContentNegotiation chooses, for every Accept header."""

from __future__ import annotations

from typing import Any

import pytest
from django.http import Http404
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer, TemplateHTMLRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from common.api.negotiation import FastContentNegotiation
from common.api.renderers import ORJSONRenderer

ACCEPTS = [
    None,
    "",  # DRF: 406
    "*/*",
    "application/json",
    "application/json; indent=2",
    "application/*",
    "text/html",
    "text/html, application/json;q=0.9",
    "application/xml",
]
RENDERER_SETS = [
    [ORJSONRenderer],
    [ORJSONRenderer, BrowsableAPIRenderer],
    [TemplateHTMLRenderer, JSONRenderer],
]


def _choice(negotiation: Any, accept: str | None, renderers: list[Any], query: str) -> Any:
    factory = APIRequestFactory()
    raw = (
        factory.get(f"/api/orders{query}") if accept is None else factory.get(f"/api/orders{query}", HTTP_ACCEPT=accept)
    )
    request = Request(raw)
    try:
        renderer, media_type = negotiation.select_renderer(request, [r() for r in renderers])
    except NotAcceptable:
        return "406"
    except Http404:
        return "404"
    return type(renderer), media_type


@pytest.mark.parametrize("query", ["", "?format=json", "?format=api"])
@pytest.mark.parametrize("renderers", RENDERER_SETS)
@pytest.mark.parametrize("accept", ACCEPTS)
def test_the_same_renderer_and_media_type_as_drf(accept: str | None, renderers: list[Any], query: str) -> None:
    assert _choice(FastContentNegotiation(), accept, renderers, query) == _choice(
        DefaultContentNegotiation(), accept, renderers, query
    )
