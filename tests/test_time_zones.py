"""The selectable time zones (common/timezones.py): one list, one spelling, on every page and in the API."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import User
from common.timezones import aliases, grouped_choices, selectable_zones
from orders.models import Order

pytestmark = pytest.mark.django_db

NOT_ZONES = ["localtime", "Factory", "posixrules", "US/Eastern", "Asia/Calcutta", "GB", "EST5EDT", "Etc/GMT+5", "Zulu"]


def _options(html: str, select_id: str) -> list[tuple[str, str]]:
    select = re.search(rf'<select[^>]*id="{select_id}"[^>]*>(.*?)</select>', html, re.S)
    assert select, select_id
    return re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', select.group(1))


def test_the_list_is_tzdatas_zone_tab_plus_utc_without_aliases_or_pseudo_zones() -> None:
    zones = selectable_zones()
    assert zones[0] == "UTC" and list(zones[1:]) == sorted(zones[1:])
    assert 400 <= len(zones) <= 450, len(zones)
    for name in ("Europe/Berlin", "Europe/Oslo", "America/New_York", "America/Argentina/Buenos_Aires", "Asia/Kolkata"):
        assert name in zones
    for name in NOT_ZONES:
        assert name not in zones
    regions = ["UTC", "Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia", "Europe"]
    assert [group for group, _ in grouped_choices()] == [*regions, "Indian", "Pacific"]
    # Old names point at the zone to use; names that are not places point nowhere.
    assert aliases()["US/Eastern"] == "America/New_York"
    assert aliases()["Asia/Calcutta"] == "Asia/Kolkata"
    assert "localtime" not in aliases() and "Factory" not in aliases()


@pytest.mark.parametrize("name", NOT_ZONES)
def test_the_api_refuses_a_name_outside_the_list_with_a_field_error(alice_api: APIClient, name: str) -> None:
    body = {"order_name": "x", "schedule_time": "2031-01-01T00:00:00Z", "time_zone": name}
    response = alice_api.post("/api/orders/", body, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["time_zone"], response.json()
    me = alice_api.patch("/api/auth/me", {"time_zone": name}, format="json")
    assert me.status_code == 400 and "time_zone" in me.json()
    assert not Order.objects.exists()


def test_an_old_alias_is_refused_with_the_name_to_use(alice_api: APIClient) -> None:
    body = {"order_name": "x", "schedule_time": "2031-01-01T00:00:00Z", "time_zone": "US/Eastern"}
    message = alice_api.post("/api/orders/", body, format="json").json()["time_zone"][0]
    assert "America/New_York" in message


def test_the_account_page_and_the_order_form_offer_the_same_names_spelled_the_same(alice: Any) -> None:
    client = Client()
    client.force_login(alice)
    account = client.get("/account").content.decode()
    order_form = client.get("/orders/new").content.decode()
    signup = Client().get("/signup").content.decode()

    expected = [(name, name) for name in selectable_zones()]
    assert _options(account, "id_time_zone") == expected
    assert _options(order_form, "id_time_zone") == expected
    assert _options(signup, "id_time_zone") == expected
    assert '<optgroup label="Europe">' in account and '<optgroup label="Europe">' in order_form
    # The search box and the browser-zone button, for the script to show.
    assert 'id="id_time_zone_search"' in order_form and 'id="tz-aliases"' in order_form


@pytest.mark.parametrize("name", ["localtime", "US/Eastern", "Factory"])
def test_the_pages_refuse_a_name_outside_the_list_beside_the_field(alice: Any, name: str) -> None:
    client = Client()
    client.force_login(alice)
    account = client.post("/account", {"time_zone": name})
    assert 'data-testid="error-time_zone"' in account.content.decode()
    form = {"order_name": "x", "kind": "once", "schedule_time": "2031-01-01T00:00", "time_zone": name}
    order = client.post("/orders/new", {**form, "misfire_policy": "run_once"})
    assert order.status_code == 400 and "time_zone" in order.context["form"].errors
    alice.refresh_from_db()
    assert alice.time_zone == "UTC" and not Order.objects.exists()


def test_signing_up_keeps_the_chosen_zone_and_refuses_an_unknown_one() -> None:
    client = Client()
    password = "a-long-sign-up-passphrase-7"
    assert (
        client.post("/signup", {"email": "tokyo@example.com", "password": password, "time_zone": "Asia/Tokyo"})[
            "Location"
        ]
        == "/orders/"
    )
    assert User.objects.get(email="tokyo@example.com").time_zone == "Asia/Tokyo"

    refused = Client().post("/signup", {"email": "nowhere@example.com", "password": password, "time_zone": "Factory"})
    assert refused.status_code == 200 and 'data-testid="error-time_zone"' in refused.content.decode()
    assert not User.objects.filter(email="nowhere@example.com").exists()


def test_an_order_made_before_the_rule_keeps_its_old_zone_on_edit(alice: Any) -> None:
    from datetime import UTC, datetime

    order = Order.objects.create(
        user=alice, order_name="legacy", schedule_time=datetime(2031, 1, 1, tzinfo=UTC), time_zone="US/Eastern"
    )
    client = Client()
    client.force_login(alice)
    html = client.get(f"/orders/{order.pk}/edit").content.decode()
    assert '<option value="US/Eastern" selected>US/Eastern</option>' in html
