"""The data the time-zone picker's script needs (static/js/time-zone.js)."""

from __future__ import annotations

from django import template
from django.utils.html import json_script
from django.utils.safestring import SafeString

from common.timezones import aliases

register = template.Library()


@register.simple_tag
def time_zone_aliases_json() -> SafeString:
    """Old names -> the zone they stand for, as a JSON data block (not a script: the CSP allows it).
    A browser that reports Asia/Calcutta then preselects Asia/Kolkata."""
    return json_script(aliases(), "tz-aliases")
