from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import include, path, re_path
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from scheduler_site.health import healthz


def home(request: HttpRequest) -> HttpResponse:
    return redirect("/orders/" if request.user.is_authenticated else "/login")


urlpatterns = [
    path("", home, name="home"),
    path("healthz", healthz, name="healthz"),
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[]), name="api-schema"),
    # The split view serves its start-up script as a file: the CSP allows no inline script.
    path(
        "api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema", permission_classes=[]), name="api-docs"
    ),
    path("api/", include("accounts.api.urls")),
    path("api/", include("orders.api.urls")),
    # Any other path under /api/ (an id the <id:...> converter refuses, say /api/orders/0) is a JSON
    # 404 like every API answer, DEBUG or not: Django's own 404 page is HTML, and handler404 below
    # only applies with DEBUG off. Exempt from CSRF like every API view: a POST to such a path is a
    # 404, not the CSRF middleware's HTML 403.
    re_path(r"^api/", csrf_exempt(lambda request, **kwargs: handler404(request))),
    path("", include("accounts.urls")),
    path("", include("orders.urls")),
]


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def handler404(request: HttpRequest, exception: Exception | None = None, **kwargs: Any) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception or Exception())


def handler500(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"detail": "Internal server error."}, status=500)
    return defaults.server_error(request)


def handler400(request: HttpRequest, exception: Exception | None = None, **kwargs: Any) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception or Exception())
