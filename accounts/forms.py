"""Page forms: shape and label the input; the services do the checks that matter."""

from __future__ import annotations

from django import forms

from accounts.models import PASSWORD_MAX_LENGTH
from common.timezones import time_zone_choices


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


class LoginForm(forms.Form):
    email = _email()
    password = _password("Password", "current-password")


class ProfileForm(forms.Form):
    time_zone = forms.ChoiceField(label="Time zone", choices=time_zone_choices)


class PasswordChangeForm(forms.Form):
    old_password = _password("Current password", "current-password")
    new_password = _password("New password", "new-password")
