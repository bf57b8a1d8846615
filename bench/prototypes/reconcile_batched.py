"""Measurement prototype (not used by the app): reconcile's "schedule every active order that has no
live job" done a batch at a time, to measure what docs/BENCHMARKS.md proposes for the engine.

Per batch: one transaction that locks the batch's active rows (in primary-key order, as everywhere),
checks which jobs are live, gives each missing order a new job id, writes them with one bulk update,
and after commit writes every job to Redis in one pipeline (the same job hash and sorted-set entry
rq-scheduler's `enqueue_at` writes). The per-row decision is the one `engine._reschedule_order` makes.

    python -m bench.prototypes.reconcile_batched 10000    # compare with `manage.py reconcile_orders`
"""

from __future__ import annotations

import sys
import time
from typing import Any

from django.db import transaction
from django.utils import timezone


def reschedule_batch(order_ids: list[int]) -> int:
    from rq_scheduler.utils import to_unix

    from orders import scheduling
    from orders.models import Order, OrderStatus
    from orders.schedule import ScheduleOverflow, occurrence_due, scheduler_time
    from orders.services import order_grid

    placed: list[tuple[str, tuple[int, int, int], Any]] = []
    with transaction.atomic():
        orders = list(
            Order.objects.select_for_update()
            .filter(pk__in=order_ids, status__in=(OrderStatus.SCHEDULED, OrderStatus.RUNNING))
            .exclude(next_run_at=None)
            .order_by("pk")
        )
        live = scheduling.live_job_ids([o.job_id for o in orders])
        changed = []
        for order in orders:
            if order.job_id in live:
                continue
            try:
                due = occurrence_due(order_grid(order), order.next_grid_index)
            except ScheduleOverflow:
                continue
            order.next_run_at = due
            order.job_id = scheduling.new_job_id(order.pk, f"v{order.schedule_version}-k{order.next_grid_index}")
            changed.append(order)
            placed.append((order.job_id, (order.pk, order.schedule_version, order.next_grid_index), due))
        Order.objects.bulk_update(changed, ["job_id", "next_run_at"], batch_size=1000)

        def write() -> None:
            sched = scheduling.scheduler()
            pipe = scheduling.connection().pipeline(transaction=False)
            now = timezone.now()
            for job_id, args, due in placed:
                if scheduler_time(due) <= now:
                    scheduling.schedule_occurrence(
                        job_id=job_id, order_id=args[0], version=args[1], grid_index=args[2], due=due
                    )
                    continue
                job = sched._create_job(
                    scheduling.OCCURRENCE_FUNC,
                    args=args,
                    id=job_id,
                    timeout=scheduling.job_timeout(),
                    result_ttl=scheduling.RESULT_TTL_SECONDS,
                    queue_name=sched.queue_name,
                    commit=False,
                )
                job.save(pipeline=pipe)
                pipe.zadd(sched.scheduled_jobs_key, {job_id: to_unix(scheduler_time(due))})
            pipe.execute()

        transaction.on_commit(write)
    return len(placed)


def reconcile_missing(batch_size: int = 1000) -> int:
    from orders.models import Order, OrderStatus

    active = Order.objects.filter(status__in=(OrderStatus.SCHEDULED, OrderStatus.RUNNING)).order_by("pk")
    last_pk, placed = 0, 0
    while True:
        ids = list(active.filter(pk__gt=last_pk).values_list("pk", flat=True)[:batch_size])
        if not ids:
            return placed
        last_pk = ids[-1]
        placed += reschedule_batch(ids)


def main() -> None:
    from bench.__main__ import bench_env, setup

    setup(bench_env())
    from bench import harness
    from orders import scheduling

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    harness.reset_orders()
    users = harness.bench_users(count // 1000 + 1)
    for i in range(0, count, 1000):
        harness.seed_orders(users[i // 1000], min(1000, count - i))
    harness.clear_queue_state()
    began = time.monotonic()
    placed = reconcile_missing()
    seconds = time.monotonic() - began
    print(
        f"batched: placed {placed} of {count} in {seconds:.1f}s ({count / seconds:.0f} orders/s); "
        f"sorted set holds {scheduling.scheduled_count()}"
    )
    harness.reset_orders()


if __name__ == "__main__":
    main()
