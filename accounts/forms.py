"""Page forms: shape and label the input; the services do the checks that matter."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import PasswordResetForm, SetPasswordForm

from accounts import services
from accounts.models import PASSWORD_MAX_LENGTH
from common.forms import time_zone_field


def _password(label: str, autocomplete: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        strip=False,
        max_length=PASSWORD_MAX_LENGTH,
        widget=forms.PasswordInput(attrs={"autocomplete": autocomplete}),
    )


def _email() -> forms.CharField:
    # A CharField, not EmailField: the service validates (one wording for the API and the pages).
    return forms.CharField(
        label="Email",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
    )


class SignupForm(forms.Form):
    email = _email()
    password = _password("Password", "new-password")
    # Optional for a client that posts only the two fields (UTC then).
    time_zone = time_zone_field(prefer_browser=True, required=False)


class LoginForm(forms.Form):
    email = _email()
    password = _password("Password", "current-password")


class ProfileForm(forms.Form):
    time_zone = time_zone_field()


class PasswordChangeForm(forms.Form):
    old_password = _password("Current password", "current-password")
    new_password = _password("New password", "new-password")


class ResetRequestForm(PasswordResetForm):
    """Django's reset form (mails a link to an active account with that address, answers the same
    either way), with this site's field attributes."""

    email = forms.CharField(
        label="Email",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
    )


class ResetPasswordForm(SetPasswordForm):
    """The new password of a reset link; saved through accounts.services.user_reset_password."""

    def save(self, commit: bool = True) -> Any:
        services.user_reset_password(user=self.user, new_password=self.cleaned_data["new_password1"])
        return self.user
