"""OpenAPI: describe RevocableJWTAuthentication as the bearer-JWT scheme simplejwt's own class maps to."""

from __future__ import annotations

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme


class RevocableJWTScheme(SimpleJWTScheme):
    target_class = "accounts.authentication.RevocableJWTAuthentication"
    name = "jwtAuth"
