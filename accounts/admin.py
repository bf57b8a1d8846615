from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm

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


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """The accounts. orders/admin.py registers its subclass in this one's place, which adds each
    user's order count and deletes a user's orders through the orders services first."""

    form = UserChangeAdminForm
    add_form = UserCreationAdminForm
    list_display: tuple[str, ...] = ("email", "date_joined", "active", "is_staff")
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

    @admin.display(description="Active", boolean=True, ordering="is_active")
    def active(self, obj: User) -> bool:
        return obj.is_active
