"""Helpers for the accounts tests: real API calls through DRF's test client, real Redis and database."""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient

PASSWORD = "correct-horse-battery-9"
NEW_PASSWORD = "another-staple-horse-42"


def anon(ip: str = "10.0.0.1") -> APIClient:
    return APIClient(REMOTE_ADDR=ip)


def bearer(access: str, ip: str = "10.0.0.1") -> APIClient:
    client = APIClient(REMOTE_ADDR=ip)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def login(email: str, password: str = PASSWORD, ip: str = "10.0.0.1") -> dict[str, Any]:
    """A fresh API session (one 'device'): its access and refresh tokens."""
    response = anon(ip).post("/api/auth/login", {"email": email, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return dict(response.json())


def me_status(access: str) -> int:
    return int(bearer(access).get("/api/auth/me").status_code)


def refresh_status(refresh: str) -> int:
    return int(anon().post("/api/auth/refresh", {"refresh": refresh}, format="json").status_code)
