from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request


class OrderPagination(PageNumberPagination):
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

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any] | None:
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
        return super().paginate_queryset(queryset, request, view)
