"""The user admin (email, date joined, active, number of orders, search) and createsuperuser."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from accounts.models import User
from orders.models import Order
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(db: Any) -> Client:
    make_user("root@example.com", is_staff=True, is_superuser=True)
    client = Client()
    client.login(email="root@example.com", password="correct-horse-battery-9")
    return client


def _orders(user: Any, n: int) -> None:
    for i in range(n):
        Order.objects.create(user=user, order_name=f"order {i}", schedule_time=timezone.now())


def test_user_list_shows_email_date_joined_active_flag_and_order_count(admin_client: Client, alice: Any) -> None:
    _orders(alice, 3)

    response = admin_client.get("/admin/accounts/user/")

    assert response.status_code == 200
    result_list = response.context["cl"].result_list
    row = next(u for u in result_list if u.email == "alice@example.com")
    assert row.order_count == 3
    html = response.content.decode()
    for header in ("Email", "Date joined", "Active", "Orders"):
        assert header in html
    assert '<td class="field-order_count">3</td>' in html


def test_user_list_counts_in_one_query_not_one_per_row(admin_client: Client) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for n in range(5):
        _orders(make_user(f"u{n}@example.com"), n)

    with CaptureQueriesContext(connection) as few:
        admin_client.get("/admin/accounts/user/")
    _orders(make_user("u9@example.com"), 2)
    with CaptureQueriesContext(connection) as more:
        admin_client.get("/admin/accounts/user/")

    assert len(more) == len(few)


def test_user_list_searches_by_email(admin_client: Client, alice: Any, bob: Any) -> None:
    response = admin_client.get("/admin/accounts/user/", {"q": "ALICE"})

    emails = [u.email for u in response.context["cl"].result_list]
    assert emails == ["alice@example.com"]


def test_admin_can_add_a_user_by_email(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/accounts/user/add/",
        {
            "email": "Ivy@Example.com",
            "usable_password": "true",
            "password1": "ivy-password-42x",
            "password2": "ivy-password-42x",
        },
    )

    assert response.status_code == 302
    assert User.objects.get(email="ivy@example.com").check_password("ivy-password-42x")


def test_admin_refuses_a_duplicate_email_in_another_case(admin_client: Client, alice: Any) -> None:
    response = admin_client.post(
        "/admin/accounts/user/add/",
        {
            "email": "ALICE@example.com",
            "usable_password": "true",
            "password1": "x-pass-123456",
            "password2": "x-pass-123456",
        },
    )

    assert response.status_code == 200
    assert User.objects.filter(email="alice@example.com").count() == 1


def test_a_user_can_be_deactivated_from_the_admin(admin_client: Client, alice: Any) -> None:
    assert admin_client.get(f"/admin/accounts/user/{alice.pk}/change/").status_code == 200

    # An unchecked checkbox is simply absent from the form post.
    response = admin_client.post(
        f"/admin/accounts/user/{alice.pk}/change/", {"email": "alice@example.com", "time_zone": "UTC"}
    )

    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.is_active is False


@pytest.mark.django_db(transaction=True)
def test_createsuperuser_asks_only_for_email_and_password() -> None:
    """Run as a real command against the test database (non-interactive form of the same prompts)."""
    from django.core.management import call_command

    os.environ["DJANGO_SUPERUSER_PASSWORD"] = "root-password-42x"
    try:
        call_command("createsuperuser", "--noinput", "--email", "Admin@Example.com", verbosity=0)
    finally:
        del os.environ["DJANGO_SUPERUSER_PASSWORD"]

    admin = User.objects.get(email="admin@example.com")
    assert admin.is_superuser and admin.is_staff
    client = Client()
    assert client.login(email="admin@example.com", password="root-password-42x")
    assert client.get("/admin/accounts/user/").status_code == 200


def test_createsuperuser_prompts_are_email_then_password() -> None:
    """The interactive command's fields: email is the username field and nothing else is required."""
    assert User.USERNAME_FIELD == "email"
    assert User.REQUIRED_FIELDS == []
    result = subprocess.run(
        [sys.executable, "manage.py", "createsuperuser", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=settings.BASE_DIR,
        env={**os.environ, "DEBUG": "true"},
    )
    assert "--email" in result.stdout
    assert "--username" not in result.stdout
