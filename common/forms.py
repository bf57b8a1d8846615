"""Pieces every page form shares: a service's errors beside the fields, the one time-zone picker."""

from __future__ import annotations

from collections.abc import Mapping

from django import forms
from django.core.exceptions import ValidationError

from common.timezones import grouped_choices


def add_service_errors(form: forms.Form, error: ValidationError, *, field_map: Mapping[str, str] = {}) -> None:
    """Show a service's ValidationError beside the fields it names (the rest above the form).

    `field_map` renames a service field to the form field that stands for it."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for field, messages in error.message_dict.items():
        target = field_map.get(field, field)
        form.add_error(target if target in form.fields else None, messages)


def time_zone_field(*, prefer_browser: bool = False, required: bool = True) -> forms.ChoiceField:
    """The one time-zone picker (the account pages' and the order form's): grouped by region,
    searchable by static/js/time-zone.js; on sign-up it starts at the browser's own zone."""
    attrs = {"data-time-zone": "", "autocomplete": "off"}
    if prefer_browser:
        attrs["data-prefer-browser"] = ""
    return forms.ChoiceField(
        label="Time zone",
        choices=grouped_choices,
        initial="UTC",
        required=required,
        widget=forms.Select(attrs=attrs),
        error_messages={"invalid_choice": "Unknown time zone %(value)s: use an IANA zone name such as Europe/Berlin."},
    )
