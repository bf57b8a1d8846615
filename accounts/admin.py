from __future__ import annotations

import contextlib
from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest

from accounts.models import User, normalize_email_address


class UserCreationAdminForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)

    def clean_email(self) -> str:
        # Normalised before the uniqueness check, so "Alice@X" is caught as a duplicate of "alice@x".
        return normalize_email_address(self.cleaned_data["email"])


class UserChangeAdminForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"

    def clean_email(self) -> str:
        return normalize_email_address(self.cleaned_data["email"])


def _delete_users_orders(user: User) -> None:
    """Delete a user's orders through the service first: it cancels their Redis jobs and takes the
    row locks in the engine's order (order, then executions), which a plain cascade would not."""
    from orders import services
    from orders.models import Order

    for order in Order.objects.filter(user=user).order_by("pk"):
        with contextlib.suppress(Http404):
            services.order_delete(order=order)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserChangeAdminForm
    add_form = UserCreationAdminForm
    list_display = ("email", "date_joined", "active", "order_count", "is_staff")
    list_filter = ("is_active", "is_staff", "is_superuser")
    search_fields = ("email",)
    ordering = ("-date_joined",)
    readonly_fields = ("date_joined", "last_login", "token_version")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Preferences", {"fields": ("time_zone",)}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates and sessions", {"fields": ("date_joined", "last_login", "token_version")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "usable_password", "password1", "password2")}),)

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        _delete_users_orders(obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            _delete_users_orders(user)
        super().delete_queryset(request, queryset)

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        # One query for the whole page instead of a COUNT per row.
        return super().get_queryset(request).annotate(order_count=Count("orders"))

    @admin.display(description="Active", boolean=True, ordering="is_active")
    def active(self, obj: User) -> bool:
        return obj.is_active

    @admin.display(description="Orders", ordering="order_count")
    def order_count(self, obj: Any) -> int:
        return int(obj.order_count)
