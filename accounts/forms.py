"""Page forms: shape and label the input; the services do the checks that matter."""

from __future__ import annotations

import functools
from zoneinfo import available_timezones

from django import forms
from django.core.exceptions import ValidationError

from accounts.api.serializers import PASSWORD_MAX_LENGTH


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


@functools.cache
def _zone_choices() -> list[tuple[str, str]]:
    # available_timezones() walks the tz database on disk: once per process is enough.
    return [(z, z) for z in sorted(available_timezones() | {"UTC"})]


class ProfileForm(forms.Form):
    time_zone = forms.ChoiceField(label="Time zone", choices=_zone_choices)


class PasswordChangeForm(forms.Form):
    old_password = _password("Current password", "current-password")
    new_password = _password("New password", "new-password")


def add_service_errors(form: forms.Form, exc: ValidationError) -> None:
    """Shows a service's field errors beside the matching fields (others at the top of the form)."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for field, messages in exc.message_dict.items():
        form.add_error(field if field in form.fields else None, messages)
