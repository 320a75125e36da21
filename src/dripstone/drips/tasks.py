"""Huey tasks of the drips domain: advance due enrollments, enroll new list members."""

from __future__ import annotations

from dripstone import db
from dripstone.drips import enrollment, runner
from dripstone.jobs.queue import huey
from dripstone.jobs.ticker import when_due


@huey.task(name="advance_enrollments")  # type: ignore[untyped-decorator]
def advance_enrollments() -> None:
    runner.advance_due(db.database())


@huey.task(name="enroll_new_members")  # type: ignore[untyped-decorator]
def enroll_new_members() -> None:
    database = db.database()
    while enrollment.enroll_new_members(database):
        pass


when_due(runner.has_due_steps, advance_enrollments)
when_due(enrollment.has_new_members, enroll_new_members)
