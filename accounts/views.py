"""Sign-up, login, logout and account pages (session auth, CSRF). Business logic is in accounts.services."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout, update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordResetForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from accounts import services
from accounts.forms import (
    LoginForm,
    PasswordChangeForm,
    ProfileForm,
    ResetPasswordForm,
    ResetRequestForm,
    SignupForm,
)
from accounts.requests import request_user
from accounts.throttling import Throttled, client_ip, password_reset_attempt
from common.forms import add_service_errors
from webhooks.selectors import signing_secret_get_for_user
from webhooks.services import signing_secret_rotate

BACKEND = "accounts.backends.EmailBackend"
INVALID_CREDENTIALS = "Invalid email or password."


def _throttled_message(exc: Throttled) -> str:
    minutes = max(1, round(exc.retry_after / 60))
    return f"Too many attempts. Try again in about {minutes} minute{'s' if minutes != 1 else ''}."


def _render(
    request: HttpRequest, template: str, context: dict[str, object], *, retry_after: int | None = None
) -> HttpResponse:
    if retry_after is None:
        return render(request, template, context)
    response = render(request, template, context, status=429)
    response["Retry-After"] = str(retry_after)
    return response


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return str(settings.LOGIN_REDIRECT_URL)


@sensitive_post_parameters("password")
@never_cache
@require_http_methods(["GET", "POST"])
def signup_view(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect(settings.LOGIN_REDIRECT_URL)
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.user_signup(**form.cleaned_data, ip=client_ip(request))
        except Throttled as exc:
            form.add_error(None, _throttled_message(exc))
            return _render(request, "accounts/signup.html", {"form": form}, retry_after=exc.retry_after)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            login(request, user, backend=BACKEND)
            return redirect(settings.LOGIN_REDIRECT_URL)
    return render(request, "accounts/signup.html", {"form": form})


@sensitive_post_parameters("password")
@never_cache
@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    next_url = _safe_next(request)
    if request.user.is_authenticated:
        return HttpResponseRedirect(next_url)
    form = LoginForm(request.POST or None)
    context = {"form": form, "next": request.POST.get("next") or request.GET.get("next") or ""}
    if request.method == "POST" and form.is_valid():
        try:
            user = services.user_login(**form.cleaned_data, ip=client_ip(request))
        except Throttled as exc:
            form.add_error(None, _throttled_message(exc))
            return _render(request, "accounts/login.html", context, retry_after=exc.retry_after)
        except services.InvalidCredentials:
            form.add_error(None, INVALID_CREDENTIALS)
        else:
            login(request, user)
            return HttpResponseRedirect(next_url)
    return render(request, "accounts/login.html", context)


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect(settings.LOGOUT_REDIRECT_URL)


def _account_page(
    request: HttpRequest,
    *,
    profile_form: ProfileForm | None = None,
    password_form: PasswordChangeForm | None = None,
    new_webhook_secret: str | None = None,
    status: int = 200,
) -> HttpResponse:
    user = request_user(request)
    context = {
        "profile_form": profile_form or ProfileForm(initial={"time_zone": user.time_zone}),
        "password_form": password_form or PasswordChangeForm(),
        "webhook_secret": signing_secret_get_for_user(user_id=user.pk),
        "new_webhook_secret": new_webhook_secret,
    }
    return render(request, "accounts/account.html", context, status=status)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def account_view(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _account_page(request)
    form = ProfileForm(request.POST)
    if form.is_valid():
        try:
            services.user_update_profile(user=request_user(request), time_zone=form.cleaned_data["time_zone"])
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "Time zone saved.")
            return redirect("account")
    return _account_page(request, profile_form=form)


@sensitive_post_parameters("old_password", "new_password")
@login_required
@require_POST
def password_change_view(request: HttpRequest) -> HttpResponse:
    form = PasswordChangeForm(request.POST)
    if form.is_valid():
        user = request_user(request)
        try:
            services.user_change_password(user=user, **form.cleaned_data, ip=client_ip(request))
        except Throttled as exc:
            form.add_error(None, _throttled_message(exc))
            response = _account_page(request, password_form=form, status=429)
            response["Retry-After"] = str(exc.retry_after)
            return response
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            # This browser stays signed in; every other session and token was revoked by the service.
            update_session_auth_hash(request, user)
            messages.success(request, "Password changed. You were signed out on every other device.")
            return redirect("account")
    return _account_page(request, password_form=form)


@login_required
@require_POST
def logout_all_view(request: HttpRequest) -> HttpResponse:
    services.user_logout_all(user=request_user(request))
    logout(request)
    messages.success(request, "You were signed out on every device.")
    return redirect(settings.LOGOUT_REDIRECT_URL)


# --- password reset: Django's own views and tokens, this site's templates and limits ------------------


class PasswordResetRequestView(auth_views.PasswordResetView):
    """Asks for an address and mails a one-hour link (settings.PASSWORD_RESET_TIMEOUT) if an active
    account has it. The answer is the same page whether or not it does, and whether or not this
    address has used up its mails for the hour; only an IP asking too often gets a 429."""

    form_class = ResetRequestForm
    template_name = "accounts/password_reset_form.html"
    email_template_name = "accounts/password_reset_email.txt"
    subject_template_name = "accounts/password_reset_subject.txt"
    success_url = reverse_lazy("password-reset-sent")

    def form_valid(self, form: PasswordResetForm) -> HttpResponse:
        email = form.cleaned_data["email"]
        try:
            send = password_reset_attempt(email=email.strip().lower(), ip=client_ip(self.request))
        except Throttled as exc:
            form.add_error(None, _throttled_message(exc))
            response = self.form_invalid(form)
            response.status_code = 429
            response["Retry-After"] = str(exc.retry_after)
            return response
        if not send:
            return HttpResponseRedirect(self.get_success_url())
        return super().form_valid(form)


class PasswordResetSentView(auth_views.PasswordResetDoneView):
    template_name = "accounts/password_reset_sent.html"


class PasswordResetSetView(auth_views.PasswordResetConfirmView):
    """The link's page: a new password, then every session and token of the account ends."""

    form_class = ResetPasswordForm
    template_name = "accounts/password_reset_set.html"
    success_url = reverse_lazy("password-reset-complete")


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "accounts/password_reset_complete.html"


@never_cache
@login_required
@require_POST
def webhook_secret_view(request: HttpRequest) -> HttpResponse:
    """Rotate the signing secret and show the new one on this page, once: not redirected, so the secret
    is never kept in a session or message cookie."""
    secret = signing_secret_rotate(user_id=request_user(request).pk)
    return _account_page(request, new_webhook_secret=secret)  # never_cache: no-store
