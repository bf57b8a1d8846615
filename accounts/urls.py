"""Account pages; each accepts the path with or without a trailing slash."""

from __future__ import annotations

from django.urls import path, re_path

from accounts import views

urlpatterns = [
    re_path(r"^signup/?$", views.signup_view, name="signup"),
    re_path(r"^login/?$", views.login_view, name="login"),
    re_path(r"^logout/?$", views.logout_view, name="logout"),
    re_path(r"^account/?$", views.account_view, name="account"),
    re_path(r"^account/password/?$", views.password_change_view, name="account-password"),
    re_path(r"^account/logout-all/?$", views.logout_all_view, name="account-logout-all"),
    path("password-reset", views.PasswordResetRequestView.as_view(), name="password-reset"),
    path("password-reset/sent", views.PasswordResetSentView.as_view(), name="password-reset-sent"),
    path("password-reset/<uidb64>/<token>", views.PasswordResetSetView.as_view(), name="password-reset-confirm"),
    path("password-reset/done", views.PasswordResetCompleteView.as_view(), name="password-reset-complete"),
    re_path(r"^account/webhook-secret/?$", views.webhook_secret_view, name="account-webhook-secret"),
]
