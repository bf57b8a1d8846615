"""Auth and account API routes (/api/auth/, /api/account/); each accepts the path with or without a trailing slash."""

from __future__ import annotations

from django.urls import re_path

from accounts.api import views

urlpatterns = [
    re_path(r"^auth/signup/?$", views.SignupView.as_view(), name="api-auth-signup"),
    re_path(r"^auth/login/?$", views.LoginView.as_view(), name="api-auth-login"),
    re_path(r"^auth/refresh/?$", views.RefreshView.as_view(), name="api-auth-refresh"),
    re_path(r"^auth/me/?$", views.MeView.as_view(), name="api-auth-me"),
    re_path(r"^auth/logout/?$", views.LogoutView.as_view(), name="api-auth-logout"),
    re_path(r"^auth/logout-all/?$", views.LogoutAllView.as_view(), name="api-auth-logout-all"),
    re_path(r"^account/webhook-secret/?$", views.WebhookSecretView.as_view(), name="api-account-webhook-secret"),
]
