"""The operators' view of orders. Every action goes through the same services as the pages and the
API, so the admin cannot leave Redis and the database disagreeing."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest

from accounts.admin import UserAdmin
from accounts.models import User
from orders import repair, services
from orders.models import Execution, Notification, Order

# The admin classes are generic only for the type checker (django-stubs); at run time they are not.
if TYPE_CHECKING:
    ExecutionInlineBase = admin.TabularInline[Execution, Order]
    OrderAdminBase = admin.ModelAdmin[Order]
    NotificationAdminBase = admin.ModelAdmin[Notification]
else:
    ExecutionInlineBase = admin.TabularInline
    OrderAdminBase = NotificationAdminBase = admin.ModelAdmin


class ExecutionInline(ExecutionInlineBase):
    model = Execution
    extra = 0
    can_delete = False
    show_change_link = False
    ordering = ("-occurrence",)
    fields = (
        "occurrence",
        "kind",
        "status",
        "scheduled_for",
        "started_at",
        "finished_at",
        "attempts",
        "result_ref",
        "error",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _for_each(
    modeladmin: OrderAdminBase,
    request: HttpRequest,
    queryset: QuerySet[Order],
    operation: Callable[..., Any],
    done: str,
) -> None:
    """Run one service per selected order; refusals (a completed order cannot be paused, ...) are
    reported per order instead of aborting the batch."""
    succeeded = 0
    for order in queryset.order_by("pk"):
        try:
            operation(order=order)
        except ValidationError as exc:
            modeladmin.message_user(request, f"{order}: {' '.join(exc.messages)}", messages.WARNING)
        except Http404:
            # Deleted by someone else since the list was shown.
            modeladmin.message_user(request, f"{order}: it no longer exists.", messages.WARNING)
        else:
            succeeded += 1
    if succeeded:
        modeladmin.message_user(request, f"{done} {succeeded} order(s).", messages.SUCCESS)


# The definition fields the admin may change, through services.order_update like the pages and the API.
ADMIN_EDITABLE_FIELDS = ("overlap_policy", "pause_after_failures")


class OrderAdminForm(forms.ModelForm[Order]):
    class Meta:
        model = Order
        fields = ADMIN_EDITABLE_FIELDS

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        changes = {name: data[name] for name in ADMIN_EDITABLE_FIELDS if name in data}
        # The service's rules (pause_after_failures at least 1, ...), beside the fields they concern.
        for name, problems in services.order_definition_errors(changes=changes, order=self.instance).items():
            if name in ADMIN_EDITABLE_FIELDS:
                for problem in problems:
                    self.add_error(name, problem)
        return data


@admin.register(Order)
class OrderAdmin(OrderAdminBase):
    form = OrderAdminForm
    change_list_template = "admin/orders/order/change_list.html"
    list_display = (
        "id",
        "order_name",
        "user",
        "status",
        "is_recurring",
        "schedule_summary",
        "executions",
        "next_run_at",
        "last_result",
        "created_at",
    )
    list_display_links = ("id", "order_name")
    list_filter = (
        "status",
        "is_recurring",
        "misfire_policy",
        "overlap_policy",
        "last_result",
        ("user", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("order_name", "user__email", "=id", "job_id")
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    list_per_page = 50
    inlines = (ExecutionInline,)
    actions = ("pause_orders", "resume_orders", "run_orders_now", "retry_orders", "reconcile_redis")
    # Schedule changes go through the pages or the API (order_update keeps the schedule consistent);
    # here every field is shown read-only but the policies (ADMIN_EDITABLE_FIELDS, saved by order_update).
    readonly_fields = (
        "user",
        "order_name",
        "schedule_time",
        "time_zone",
        "status",
        "is_recurring",
        "repeat_interval",
        "repeat_unit",
        "cron",
        "end_at",
        "schedule_description",
        "max_executions",
        "executions_count",
        "misfire_policy",
        "target_url",
        "payload",
        "consecutive_failures",
        "job_id",
        "schedule_version",
        "next_grid_index",
        "next_run_at",
        "execution_limit",
        "occurrence_seq",
        "last_run_at",
        "last_result",
        "idempotency_key",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("user", "order_name", "status")}),
        (
            "Schedule",
            {
                "fields": (
                    "schedule_time",
                    "time_zone",
                    "is_recurring",
                    "schedule_description",
                    "repeat_interval",
                    "repeat_unit",
                    "cron",
                    "end_at",
                    "max_executions",
                    "misfire_policy",
                )
            },
        ),
        ("Overlaps and failures", {"fields": ("overlap_policy", "pause_after_failures", "consecutive_failures")}),
        ("Webhook", {"fields": ("target_url", "payload")}),
        (
            "Engine state",
            {
                "fields": (
                    "executions_count",
                    "execution_limit",
                    "next_run_at",
                    "next_grid_index",
                    "schedule_version",
                    "occurrence_seq",
                    "job_id",
                    "last_run_at",
                    "last_result",
                    "idempotency_key",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        # The bulk delete must also cancel the Redis jobs: one service call per order.
        for order in queryset:
            with contextlib.suppress(Http404):  # already deleted by someone else
                services.order_delete(order=order)

    def delete_model(self, request: HttpRequest, obj: Order) -> None:
        services.order_delete(order=obj)

    def save_model(self, request: HttpRequest, obj: Order, form: Any, change: bool) -> None:
        # Never obj.save(): the service re-reads the row under its lock and applies only the changes.
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name in ADMIN_EDITABLE_FIELDS}
        if changes:
            services.order_update(order=obj, changes=changes)

    @admin.display(description="Schedule")
    def schedule_summary(self, order: Order) -> str:
        return order.schedule_description

    @admin.display(description="In words")
    def schedule_description(self, order: Order) -> str:
        return order.schedule_description

    @admin.display(description="Executions")
    def executions(self, order: Order) -> str:
        limit = "\u221e" if order.execution_limit is None else str(order.execution_limit)
        return f"{order.executions_count} / {limit}"

    @admin.action(description="Pause selected orders")
    def pause_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        _for_each(self, request, queryset, services.order_pause, "Paused")

    @admin.action(description="Resume selected orders")
    def resume_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        _for_each(self, request, queryset, services.order_resume, "Resumed")

    @admin.action(description="Run selected orders now (one extra execution each)")
    def run_orders_now(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        _for_each(self, request, queryset, services.order_run_now, "Started a run of")

    @admin.action(description="Retry the last failed run of selected orders")
    def retry_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        _for_each(self, request, queryset, services.order_retry, "Retrying")

    @admin.action(description="Reconcile Redis with the database (all orders)")
    def reconcile_redis(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        # Reconcile is global by nature: it compares every active order with the jobs in Redis.
        report = repair.reconcile()
        self.message_user(request, f"Reconciled: {report}.", messages.SUCCESS)


@admin.register(Notification)
class NotificationAdmin(NotificationAdminBase):
    list_display = ("id", "user", "kind", "message", "order", "created_at", "read_at")
    list_filter = ("kind", ("read_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("message", "user__email")
    list_select_related = ("user", "order")
    date_hierarchy = "created_at"
    readonly_fields = ("user", "order", "kind", "message", "created_at")
    fields = ("user", "order", "kind", "message", "created_at", "read_at")


def delete_users_orders(user: User) -> None:
    """Delete a user's orders through the service first: it cancels their Redis jobs and takes the
    row locks in the engine's order (order, then executions), which a plain cascade would not."""
    for order in Order.objects.filter(user=user).order_by("pk"):
        with contextlib.suppress(Http404):
            services.order_delete(order=order)


# Accounts know nothing of orders; the users' admin with their orders is composed here, above both.
admin.site.unregister(User)


@admin.register(User)
class UserWithOrdersAdmin(UserAdmin):
    list_display: tuple[str, ...] = ("email", "date_joined", "active", "order_count", "is_staff")

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        delete_users_orders(obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            delete_users_orders(user)
        super().delete_queryset(request, queryset)

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        # One query for the whole page instead of a COUNT per row.
        return super().get_queryset(request).annotate(order_count=Count("orders"))

    @admin.display(description="Orders", ordering="order_count")
    def order_count(self, obj: Any) -> int:
        return int(obj.order_count)
