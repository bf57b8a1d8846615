from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone
from django.utils.crypto import salted_hmac


def normalize_email_address(email: str) -> str:
    """Emails are the login and unique regardless of case, so the whole address is stored lower-cased."""
    return email.strip().lower()


# The longest password accepted (hashing a huge one is a denial of service); the API and the pages share it.
PASSWORD_MAX_LENGTH = 1024


# Kept by database triggers (orders/active_counts.py), never by save().
COUNTER_FIELDS = frozenset({"active_orders", "orders_total"})


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra: Any) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=normalize_email_address(email), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra)

    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(email=normalize_email_address(username or ""))


class User(AbstractBaseUser, PermissionsMixin):
    email = models.EmailField(unique=True, max_length=254)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)
    time_zone = models.CharField(max_length=64, default="UTC", help_text="IANA time zone name, e.g. Europe/Berlin")
    # Copied into every JWT; logout-all and a password change bump it, so older tokens stop matching.
    # An integer compare is exact, unlike an issued-at timestamp with whole-second resolution.
    token_version = models.PositiveIntegerField(default=0)
    # The one session (JWT "sid" claim) that survives a password change made from it: its tokens with a
    # version from kept_session_version up stay valid. "Every other token is revoked", this device stays in.
    kept_session_id = models.CharField(max_length=64, blank=True, default="")
    kept_session_version = models.PositiveIntegerField(default=0)
    # At least the number of the user's active orders (never fewer): what the active-order cap reads
    # instead of a COUNT. Database triggers add one whenever an order becomes active (orders/migrations/
    # 0009_speed_active_order_triggers.py); nothing subtracts on the worker's path, so a full counter is
    # recounted exactly before a create is refused (orders/sql.py). Written only by SQL: save() leaves it out.
    active_orders = models.PositiveIntegerField(default=0, editable=False)
    # Exactly the number of the user's orders, kept by the same triggers (an INSERT adds one, a DELETE
    # takes one away): the total of an unfiltered order list without a COUNT over all of them.
    orders_total = models.PositiveIntegerField(default=0, editable=False)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.email

    def _get_session_auth_hash(self, secret: str | None = None) -> str:
        # Django ends every browser session whose stored hash no longer matches. Mixing the token version
        # in makes logout-all and a password change end browser sessions too, not just JWTs.
        key_salt = "accounts.User.get_session_auth_hash"
        return salted_hmac(
            key_salt, f"{self.password}:{self.token_version}", secret=secret, algorithm="sha256"
        ).hexdigest()

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.email = normalize_email_address(self.email)
        if not self._state.adding and kwargs.get("update_fields") is None and not args:
            # A full save of an instance read earlier must not write back an older counter (nor, as
            # Django's own save() would not, a field that was never loaded).
            skipped = COUNTER_FIELDS | self.get_deferred_fields()
            kwargs["update_fields"] = [
                f.name for f in self._meta.concrete_fields if not f.primary_key and f.attname not in skipped
            ]
        super().save(*args, **kwargs)
