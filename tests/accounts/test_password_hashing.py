"""The suite hashes test passwords with a cheap hasher (tests/conftest.py, _fast_password_hasher);
this test keeps the production hasher (Django's default list, which settings.py keeps unless
FAST_PASSWORD_HASHER is set) exercised end to end: sign-up stores a PBKDF2 hash, login checks it."""

from __future__ import annotations

import pytest
from django.conf import global_settings
from django.test.utils import override_settings

from accounts import services
from accounts.services import InvalidCredentials


@pytest.mark.django_db
def test_sign_up_and_login_with_the_production_password_hasher() -> None:
    with override_settings(PASSWORD_HASHERS=global_settings.PASSWORD_HASHERS):
        user = services.user_signup(email="pbkdf2@example.com", password="a long enough pass phrase")
        assert user.password.startswith("pbkdf2_sha256$")
        assert services.user_login(email="pbkdf2@example.com", password="a long enough pass phrase").pk == user.pk
        with pytest.raises(InvalidCredentials):
            services.user_login(email="pbkdf2@example.com", password="not the pass phrase")
