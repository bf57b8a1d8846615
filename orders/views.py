"""Server-rendered order pages. Views read through orders.selectors and write through orders.services
(the same functions the API calls); forms only shape the input."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.requests import request_user
from common.converters import id_from_query
from orders import selectors, services
from orders.calendar_rules import cron_problems
from orders.forms import CRON_PRESETS, ONCE, RECURRING, OrderFilterForm, OrderForm, wall_time_text
from orders.models import ExecutionStatus, Order, OrderStatus
from orders.recurrence import Grid, ScheduleOverflow, describe, first_index_due_after, upcoming
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


DASHBOARD_COLUMNS = [
    ("name", "Name"),
    ("status", "Status"),
    ("type", "Type"),
    ("next_run", "Next run"),
    ("executions", "Executions"),
    ("last_result", "Last result"),
]


def _sortable_columns(request: HttpRequest, current: str | None) -> list[dict[str, Any]]:
    """Each dashboard header: its link (ascending first, then the other way) and aria-sort."""
    columns = []
    for key, label in DASHBOARD_COLUMNS:
        query = request.GET.copy()
        query.pop("page", None)
        ascending, descending = current == key, current == f"-{key}"
        query["sort"] = f"-{key}" if ascending else key
        columns.append(
            {
                "key": key,
                "label": label,
                "url": f"?{query.urlencode()}",
                "aria_sort": "ascending" if ascending else "descending" if descending else "",
            }
        )
    return columns


def _dashboard_context(request: HttpRequest) -> dict[str, Any]:
    filters = OrderFilterForm(request.GET)
    sort = filters.sort_key()
    orders = selectors.order_list_sorted_for_user(user=request.user, sort=sort, **filters.selector_arguments())
    page = Paginator(orders, DASHBOARD_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return {
        "columns": _sortable_columns(request, sort),
        "sort": sort or "",
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
        "cron_presets": CRON_PRESETS,
    }
    return render(request, "orders/order_form.html", context, status=status)


def _form_key(request: HttpRequest) -> str:
    """The Idempotency-Key hidden in the create form and the Run now and Retry buttons: a form sent
    twice, by a double click or by reloading the page after a 503, acts once."""
    key = request.POST.get("idempotency_key", "")
    return key if FORM_KEY.fullmatch(key) else ""


def _add_definition_errors(form: OrderForm, order: Order | None) -> None:
    """An invalid form also shows what the service says about its valid fields (a past time beside
    a missing name), rather than one more round trip for each."""
    changes = form.partial_changes()
    form.add_definition_errors(services.order_definition_errors(changes=changes, order=order), checked=set(changes))


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
        else:
            _add_definition_errors(form, None)
        return _render_form(request, form, None, status=400, idempotency_key=key)
    tz = _user_time_zone(request)
    # A sensible default: the next full hour on the user's clock.
    start = (timezone.now() + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    initial: dict[str, Any] = {
        "time_zone": tz,
        "schedule_time": wall_time_text(start, tz),
        "kind": ONCE,
        "repeat_unit": "days",
    }
    source = request.GET.get("from")
    if source is not None:
        source_id = id_from_query(source)
        if source_id is None:
            raise Http404("Not found.")
        initial = _duplicate_initial(selectors.order_get_for_user(user=request.user, order_id=source_id), start)
    return _render_form(request, OrderForm(initial=initial), None, idempotency_key=uuid.uuid4().hex)


def _duplicate_initial(source: Order, fallback_start: datetime) -> dict[str, Any]:
    """The create form prefilled with another order's definition ("Duplicate"). A new order needs a
    time ahead: the source's own if it is still ahead, else its next run (a recurring order keeps
    its grid), else the next full hour."""
    initial = OrderForm.initial_for(source)
    now = timezone.now()
    start = next(
        (moment for moment in (source.schedule_time, source.next_run_at) if moment is not None and moment > now),
        fallback_start,
    )
    initial["schedule_time"] = wall_time_text(start, source.time_zone)
    return initial


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
        else:
            _add_definition_errors(form, order)
        return _render_form(request, form, order, status=400)
    return _render_form(request, OrderForm(order=order), order)


PREVIEW_FIELDS = ("schedule_time", "time_zone", "repeat_interval", "repeat_unit", "max_executions", "cron", "end_at")
PAST_TIME = "This time has passed: choose one ahead."


def _preview_grid(form: OrderForm, order: Order | None) -> Grid | None:
    """The grid the form describes, if it describes one yet."""
    data = form.cleaned_data
    anchor = data.get("schedule_at")
    if anchor is None and order is not None and "schedule_time" not in form.errors:
        anchor = order.schedule_time
    tz_name = data.get("time_zone")
    if anchor is None or not tz_name:
        return None
    if data.get("kind") != RECURRING:
        return Grid(anchor, tz_name)
    end_at = data.get("end_at_instant")
    if form.on_calendar:
        cron = (data.get("cron") or "").strip()
        return Grid(anchor, tz_name, cron=cron, end_at=end_at) if cron else None
    interval, unit = data.get("repeat_interval"), data.get("repeat_unit")
    if not interval or not unit:
        return None
    return Grid(anchor, tz_name, interval, unit, end_at=end_at)


def _preview_times(form: OrderForm, order: Order | None, grid: Grid, now: datetime) -> list[datetime]:
    if not grid.recurring:
        return [grid.anchor]
    data = form.cleaned_data
    maximum = None if data.get("unlimited") else data.get("max_executions")
    done = order.executions_count if order is not None else 0
    try:
        first = first_index_due_after(grid, now)
    except ScheduleOverflow:
        return []
    limit = None if maximum is None else first - 1 + max(maximum - done, 0)
    return upcoming(grid, first, PREVIEW_COUNT, limit_index=limit)


def _typed_a_past_time(form: OrderForm, order: Order | None, now: datetime) -> bool:
    """A one-time order whose time, as typed, has passed (an untouched edit form of an order that has
    run keeps its old time and simply has no runs ahead)."""
    anchor = form.cleaned_data.get("schedule_at")
    if form.cleaned_data.get("kind") == RECURRING or anchor is None or anchor > now:
        return False
    return order is None or abs((order.schedule_time - anchor).total_seconds()) >= 1


@login_required
@require_POST
def order_preview(request: HttpRequest, order_id: int | None = None) -> JsonResponse:
    """The schedule on the form in words and its next run times, computed without saving anything.

    A POST of the form as it stands (a long name would not fit in a query string). A half-filled
    form is not an error: the answer is 200 with the fields that keep a preview from being shown,
    and a time in the past is never listed as a next run.
    """
    order = selectors.order_get_for_user(user=request.user, order_id=order_id) if order_id is not None else None
    form = OrderForm(request.POST, order=order)
    form.is_valid()
    errors = {
        name: [str(message) for message in messages_]
        for name, messages_ in form.errors.items()
        if name in PREVIEW_FIELDS
    }
    now = timezone.now()
    if not errors and _typed_a_past_time(form, order, now):
        errors["schedule_time"] = [PAST_TIME]
    tz_name = form.cleaned_data.get("time_zone") or _user_time_zone(request)
    grid = None if errors else _preview_grid(form, order)
    if grid is not None and grid.cron is not None:
        # The same check the service makes when the form is sent (a read: nothing is saved).
        problems = cron_problems(
            grid.cron, time_zone=tz_name, start=grid.anchor, min_interval_seconds=settings.ORDER_MIN_INTERVAL_SECONDS
        )
        if problems:
            errors["cron"] = problems
            grid = None
    runs = [] if grid is None else [run for run in _preview_times(form, order, grid, now) if run > now]
    return JsonResponse(
        {
            "time_zone": tz_name,
            "description": describe(grid) if grid is not None else "",
            "runs": [in_zone(run, tz_name) for run in runs],
            "errors": errors,
        }
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
