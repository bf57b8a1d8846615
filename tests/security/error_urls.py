"""The project's URLs plus two views that fail, to see what a crash looks like from outside."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from scheduler_site import urls as project_urls

SECRET_IN_TRACEBACK = "internal detail that must not leak"


def page_that_crashes(request: HttpRequest) -> HttpResponse:
    raise RuntimeError(SECRET_IN_TRACEBACK)


class ApiThatCrashes(APIView):
    permission_classes = ()

    def get(self, request: Request) -> Response:
        raise RuntimeError(SECRET_IN_TRACEBACK)


urlpatterns = [
    path("crash", page_that_crashes),
    path("api/crash", ApiThatCrashes.as_view()),
    *project_urls.urlpatterns,
]
handler400 = project_urls.handler400
handler404 = project_urls.handler404
handler500 = project_urls.handler500
