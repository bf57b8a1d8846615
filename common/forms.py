"""Showing a service's errors on a page form."""

from __future__ import annotations

from collections.abc import Mapping

from django import forms
from django.core.exceptions import ValidationError


def add_service_errors(form: forms.Form, error: ValidationError, *, field_map: Mapping[str, str] = {}) -> None:
    """Show a service's ValidationError beside the fields it names (the rest above the form).

    `field_map` renames a service field to the form field that stands for it."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for field, messages in error.message_dict.items():
        target = field_map.get(field, field)
        form.add_error(target if target in form.fields else None, messages)
