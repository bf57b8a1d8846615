"""The per-request user read (a precompiled statement) and the pooled cache client."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.core.cache import cache

from accounts.models import User
from accounts.selectors import user_get_by_id
from tests.conftest import api_client_for, make_user

pytestmark = pytest.mark.django_db


def test_user_read_by_id_equals_the_orm_instance() -> None:
    user = make_user(time_zone="Europe/Berlin", token_version=3, kept_session_id="sid", kept_session_version=2)
    User.objects.filter(pk=user.pk).update(last_login=datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=UTC), is_staff=True)
    expected = User.objects.get(pk=user.pk)
    loaded = user_get_by_id(user.pk)
    assert isinstance(loaded, User) and not loaded._state.adding and loaded._state.db == "default"
    for field in User._meta.concrete_fields:
        value, wanted = getattr(loaded, field.attname), getattr(expected, field.attname)
        assert value == wanted and type(value) is type(wanted), field.name
    assert user_get_by_id(user.pk + 10_000) is None


def test_a_deleted_user_token_is_refused(alice: Any) -> None:
    client = api_client_for(alice)
    assert client.get("/api/orders/").status_code == 200
    User.objects.filter(pk=alice.pk).delete()
    response = client.get("/api/orders/")
    assert response.status_code == 401
    assert response.json()["code"] == "user_not_found"


def test_cache_reuses_one_client_per_pool() -> None:
    backend: Any = cache
    first = backend._cache.get_client(write=False)
    assert backend._cache.get_client(write=True) is first
    cache.set("pooled-check", 5)
    assert cache.get("pooled-check") == 5
