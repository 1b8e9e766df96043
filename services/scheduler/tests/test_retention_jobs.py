"""The retention job: one ``retention.<service>`` per owner, daily at 03:30 business time."""

from __future__ import annotations

from datetime import UTC, datetime

from jggl_common.contracts import job_finished_subject, tick_subject
from jggl_common.retention import retention_job
from scheduler.jobs.definitions import RETENTION_OWNERS, builtin_jobs


def test_each_owner_has_its_retention_job_daily_at_half_past_three_business_time() -> None:
    jobs = {job.name: job for job in builtin_jobs()}
    assert set(RETENTION_OWNERS) == {"crm", "ai", "notifier"}
    for owner in RETENTION_OWNERS:
        job = jobs[retention_job(owner)]
        assert job.owner == owner
        assert (job.kind, job.expression, job.timezone) == ("cron", "30 3 * * *", None)
        assert tick_subject(job.name) == f"scheduler.tick.retention.{owner}"
        assert job_finished_subject(job.owner) == f"{owner}.job.finished"
        # In the business time zone: 03:30 in Kyiv is 01:30 UTC in winter.
        after = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
        assert job.schedule("Europe/Kyiv").next_after(after) == datetime(2026, 12, 7, 1, 30, tzinfo=UTC)
