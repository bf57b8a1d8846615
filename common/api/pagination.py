from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.paginator import Page, Paginator
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request

# (offset, limit) -> (rows, total); the total is None when there are no rows.
PageFetcher = Callable[[int, int], tuple[list[Any], int | None]]


class PagePagination(PageNumberPagination):
    page_size_query_param = "page_size"

    def __init__(self) -> None:
        # Read per request, not at import, so the limits follow the settings (and their overrides).
        self.page_size = settings.API_PAGE_SIZE
        self.max_page_size = settings.API_MAX_PAGE_SIZE

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            # The same bounds paginate_queryset enforces (a 400 past them), so the schema tells the truth.
            if parameter["name"] == self.page_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": 999_999_999}
            elif parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size}
                parameter["description"] = f"Results per page: 1 to {self.max_page_size} (default {self.page_size})."
        return parameters

    def _check_parameters(self, request: Request) -> None:
        # Malformed paging parameters are the caller's mistake (400); a page past the end is a 404.
        errors: dict[str, list[str]] = {}
        for name, upper in (("page", None), (self.page_size_query_param, self.max_page_size)):
            raw = request.query_params.get(name)
            if raw is None or (raw == "last" and name == "page"):
                continue
            # isdigit() alone would let "²" through to int(), which rejects it with a ValueError.
            if not (raw.isascii() and raw.isdigit()) or int(raw) < 1 or len(raw) > 9:
                errors[name] = ["Must be a whole number of at least 1."]
            elif upper is not None and int(raw) > upper:
                errors[name] = [f"At most {upper}."]
        if errors:
            raise ValidationError(errors)

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any] | None:
        self._check_parameters(request)
        return super().paginate_queryset(queryset, request, view)

    def paginate_rows(self, fetch: PageFetcher, request: Request) -> list[Any]:
        """One page through `fetch(offset, limit) -> (rows, total or None)`, with the same count,
        links and errors as paginate_queryset.

        The fetcher reads the total with the page (one statement, one snapshot); a page with no
        rows carries no total: that is page 1 of nothing (count 0) or a page past the end (404).
        """
        self._check_parameters(request)
        self.request = request
        page_size = int(self.get_page_size(request) or settings.API_PAGE_SIZE)
        raw = request.query_params.get(self.page_query_param) or "1"
        if raw in self.last_page_strings:
            # The last page's number needs the total first.
            _, total = fetch(0, 1)
            number = max(1, -(-(total or 0) // page_size))
        else:
            number = int(raw)
        rows, total = fetch((number - 1) * page_size, page_size)
        if not rows and number > 1:
            raise NotFound(self.invalid_page_message)
        paginator: Paginator[Any] = Paginator([], page_size)
        # Paginator.count is a cached_property: give it the total we already have.
        paginator.__dict__["count"] = total or 0
        self.page = Page(rows, number, paginator)
        self.display_page_controls = paginator.num_pages > 1
        return rows
