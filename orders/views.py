"""Server-rendered order pages. Views read through orders.selectors and write through orders.services
(the same functions the API calls); forms only shape the input."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.requests import request_user
from orders import selectors, services
from orders.forms import ONCE, RECURRING, OrderFilterForm, OrderForm, wall_time_text
from orders.models import ExecutionStatus, Order, OrderStatus
from orders.recurrence import Grid, ScheduleOverflow, first_index_due_after, upcoming
from orders.templatetags.order_pages import in_zone

DASHBOARD_PAGE_SIZE = 20
HISTORY_ROWS = 50
NOTIFICATIONS_PAGE_SIZE = 30
PREVIEW_COUNT = 5
# How often the open pages ask for fresh status (milliseconds).
LIVE_REFRESH_MS = 2000
FORM_KEY = re.compile(r"[0-9a-f]{32}")


def _user_time_zone(request: HttpRequest) -> str:
    return request_user(request).time_zone or "UTC"


# --- dashboard ----------------------------------------------------------------------------------


def _dashboard_context(request: HttpRequest) -> dict[str, Any]:
    filters = OrderFilterForm(request.GET)
    orders = selectors.order_list_for_user(user=request.user, **filters.selector_arguments())
    page = Paginator(orders, DASHBOARD_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return {
        "filters": filters,
        "page_obj": page,
        "orders": page.object_list,
        "filter_query": query.urlencode(),
        "user_tz": _user_time_zone(request),
        "live_url": f"{reverse('order-list-live')}?{request.GET.urlencode()}",
        "live_ms": LIVE_REFRESH_MS,
    }


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "orders/dashboard.html", _dashboard_context(request))


@login_required
@require_GET
def dashboard_live(request: HttpRequest) -> HttpResponse:
    """The dashboard's rows alone, for the page's refresh script."""
    return render(request, "orders/_order_rows.html", _dashboard_context(request))


# --- create / edit ---------------------------------------------------------------------------------


def _render_form(
    request: HttpRequest, form: OrderForm, order: Order | None, status: int = 200, idempotency_key: str = ""
) -> HttpResponse:
    preview_url = reverse("order-preview-existing", args=[order.pk]) if order is not None else reverse("order-preview")
    context = {
        "form": form,
        "order": order,
        "preview_url": preview_url,
        "user_tz": _user_time_zone(request),
        "idempotency_key": idempotency_key,
    }
    return render(request, "orders/order_form.html", context, status=status)


def _form_key(request: HttpRequest) -> str:
    """The Idempotency-Key hidden in the create form and the Run now and Retry buttons: a form sent
    twice, by a double click or by reloading the page after a 503, acts once."""
    key = request.POST.get("idempotency_key", "")
    return key if FORM_KEY.fullmatch(key) else ""


@login_required
@require_http_methods(["GET", "POST"])
def order_new(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = OrderForm(request.POST)
        key = _form_key(request) or uuid.uuid4().hex
        if form.is_valid():
            definition = services.OrderDefinition(**form.changes())
            try:
                order, replayed = services.order_create_once(
                    user=request_user(request), definition=definition, idempotency_key=key
                )
            except ValidationError as exc:
                form.add_service_errors(exc)
            except services.IdempotencyKeyReused as exc:
                form.add_error(
                    None,
                    f"This form has already scheduled \u201c{exc.order.order_name}\u201d. "
                    "Send it again to schedule another order.",
                )
                return _render_form(request, form, None, status=409, idempotency_key=uuid.uuid4().hex)
            else:
                if replayed:
                    messages.info(
                        request, f"This form had already been sent: order \u201c{order.order_name}\u201d is scheduled."
                    )
                else:
                    messages.success(request, f"Order \u201c{order.order_name}\u201d scheduled.")
                return redirect("order-detail", order_id=order.pk)
        return _render_form(request, form, None, status=400, idempotency_key=key)
    tz = _user_time_zone(request)
    # A sensible default: the next full hour on the user's clock.
    start = (timezone.now() + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    form = OrderForm(
        initial={"time_zone": tz, "schedule_time": wall_time_text(start, tz), "kind": ONCE, "repeat_unit": "days"}
    )
    return _render_form(request, form, None, idempotency_key=uuid.uuid4().hex)


@login_required
@require_http_methods(["GET", "POST"])
def order_edit(request: HttpRequest, order_id: int) -> HttpResponse:
    order = selectors.order_get_for_user(user=request.user, order_id=order_id)
    if request.method == "POST":
        form = OrderForm(request.POST, order=order)
        if form.is_valid():
            try:
                order = services.order_update(order=order, changes=form.changes())
            except ValidationError as exc:
                form.add_service_errors(exc)
            else:
                messages.success(request, f"Order \u201c{order.order_name}\u201d saved.")
                return redirect("order-detail", order_id=order.pk)
        return _render_form(request, form, order, status=400)
    return _render_form(request, OrderForm(order=order), order)


def _preview_times(form: OrderForm, order: Order | None, now: datetime) -> list[datetime]:
    data = form.cleaned_data
    anchor = data.get("schedule_at")
    if anchor is None and order is not None and "schedule_time" not in form.errors:
        anchor = order.schedule_time
    tz_name = data.get("time_zone")
    if anchor is None or not tz_name:
        return []
    if data.get("kind") != RECURRING:
        return [anchor]
    interval, unit = data.get("repeat_interval"), data.get("repeat_unit")
    if not interval or not unit:
        return []
    grid = Grid(anchor, tz_name, interval, unit)
    maximum = None if data.get("unlimited") else data.get("max_executions")
    done = order.executions_count if order is not None else 0
    try:
        first = first_index_due_after(grid, now)
    except ScheduleOverflow:
        return []
    limit = None if maximum is None else first - 1 + max(maximum - done, 0)
    return upcoming(grid, first, PREVIEW_COUNT, limit_index=limit)


@login_required
@require_GET
def order_preview(request: HttpRequest, order_id: int | None = None) -> JsonResponse:
    """The next run times of the definition on the form, computed without saving anything."""
    order = selectors.order_get_for_user(user=request.user, order_id=order_id) if order_id is not None else None
    form = OrderForm(request.GET, order=order)
    form.is_valid()
    errors = {
        name: [str(message) for message in messages_]
        for name, messages_ in form.errors.items()
        if name in ("schedule_time", "time_zone", "repeat_interval", "repeat_unit", "max_executions")
    }
    tz_name = form.cleaned_data.get("time_zone") or _user_time_zone(request)
    runs = [] if errors else _preview_times(form, order, timezone.now())
    return JsonResponse(
        {"time_zone": tz_name, "runs": [in_zone(run, tz_name) for run in runs], "errors": errors},
        status=400 if errors else 200,
    )


# --- detail and actions ----------------------------------------------------------------------------------


def _detail_context(request: HttpRequest, order: Order) -> dict[str, Any]:
    executions = selectors.execution_list_for_order(order=order)
    return {
        "order": order,
        "executions": executions[:HISTORY_ROWS],
        "execution_total": executions.count(),
        "history_rows": HISTORY_ROWS,
        "upcoming": selectors.upcoming_runs(order=order, count=PREVIEW_COUNT),
        "user_tz": _user_time_zone(request),
        "live_url": reverse("order-detail-live", args=[order.pk]),
        "live_ms": LIVE_REFRESH_MS,
        "can_pause": order.status in (OrderStatus.SCHEDULED, OrderStatus.RUNNING),
        "can_resume": order.status == OrderStatus.PAUSED,
        "can_run": order.status != OrderStatus.PAUSED and order.executions_remaining != 0,
        "run_key": uuid.uuid4().hex,
        "can_retry": order.status != OrderStatus.PAUSED and executions.filter(status=ExecutionStatus.FAILED).exists(),
    }


@login_required
@require_GET
def order_detail(request: HttpRequest, order_id: int) -> HttpResponse:
    order = selectors.order_get_for_user(user=request.user, order_id=order_id)
    return render(request, "orders/order_detail.html", _detail_context(request, order))


@login_required
@require_POST
def order_test_delivery(request: HttpRequest, order_id: int) -> HttpResponse:
    """Send one signed test request to the order's target and show its result on the order page
    (rendered, not redirected: the result is shown once and kept nowhere)."""
    order = selectors.order_get_for_user(user=request.user, order_id=order_id)
    try:
        sent = services.order_send_test_delivery(order=order)
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
        return redirect("order-detail", order_id=order.pk)
    context = {**_detail_context(request, order), "test_delivery": sent}
    return render(request, "orders/order_detail.html", context)


@login_required
@require_GET
def order_detail_live(request: HttpRequest, order_id: int) -> HttpResponse:
    """The changing part of the detail page alone, for the page's refresh script."""
    order = selectors.order_get_for_user(user=request.user, order_id=order_id)
    return render(request, "orders/_order_live.html", _detail_context(request, order))


def _run_now(order: Order, key: str) -> str:
    execution, replayed = services.order_run_now_once(order=order, idempotency_key=key or None)
    if replayed:
        return f"Run #{execution.occurrence} had already been started by this button."
    return f"Run #{execution.occurrence} started."


def _retry(order: Order, key: str) -> str:
    execution, replayed = services.order_retry_once(order=order, idempotency_key=key or None)
    if replayed:
        return f"Run #{execution.occurrence} had already been retried by this button."
    return f"Retrying run #{execution.occurrence}."


def _pause(order: Order) -> str:
    services.order_pause(order=order)
    return "Paused."


def _resume(order: Order) -> str:
    services.order_resume(order=order)
    return "Resumed."


ACTIONS: dict[str, Callable[[Order], str]] = {"pause": _pause, "resume": _resume}
# Run now and Retry carry a key of their own (see _detail_context): pressed twice, they act once.
KEYED_ACTIONS: dict[str, Callable[[Order, str], str]] = {"run-now": _run_now, "retry": _retry}


@login_required
@require_POST
def order_action(request: HttpRequest, order_id: int, action: str) -> HttpResponseRedirect:
    order = selectors.order_get_for_user(user=request.user, order_id=order_id)
    try:
        if action in KEYED_ACTIONS:
            message = KEYED_ACTIONS[action](order, _form_key(request))
        else:
            message = ACTIONS[action](order)
        messages.success(request, message)
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
    return redirect("order-detail", order_id=order.pk)


@login_required
@require_http_methods(["GET", "POST"])
def order_delete(request: HttpRequest, order_id: int) -> HttpResponse:
    order = selectors.order_get_for_user(user=request.user, order_id=order_id)
    if request.method == "POST":
        name = order.order_name
        services.order_delete(order=order)
        messages.success(request, f"Order \u201c{name}\u201d deleted.")
        return redirect("order-list")
    return render(request, "orders/order_confirm_delete.html", {"order": order, "user_tz": _user_time_zone(request)})


# --- notifications ---------------------------------------------------------------------------------------


@login_required
@require_GET
def notification_list(request: HttpRequest) -> HttpResponse:
    notifications = selectors.notification_list_for_user(user=request.user).select_related("order")
    page = Paginator(notifications, NOTIFICATIONS_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "notifications/notification_list.html",
        {"page_obj": page, "notifications": page.object_list, "user_tz": _user_time_zone(request)},
    )


@login_required
@require_POST
def notification_read(request: HttpRequest, notification_id: int) -> HttpResponseRedirect:
    notification = selectors.notification_get_for_user(user=request.user, notification_id=notification_id)
    services.notification_mark_read(notification=notification)
    return redirect("notification-list")


@login_required
@require_POST
def notification_read_all(request: HttpRequest) -> HttpResponseRedirect:
    count = services.notification_mark_all_read(user=request_user(request))
    messages.success(request, f"Marked {count} notification(s) as read.")
    return redirect("notification-list")
