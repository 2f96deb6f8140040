"""Six-field NCRONTAB schedules, as timer triggers write them.

`{second} {minute} {hour} {day} {month} {day-of-week}`, each field `*`, a number, a range `a-b`,
a step `*/n`, `a-b/n` or `a/n` (from a to the field's end), or a comma-separated list of those; day-of-week 0-6 with Sunday 0.
Like NCrontab (and unlike Vixie cron), a day must match both the day and the day-of-week field.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# (lowest, highest) per field
_RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_SEARCH_DAYS = 366 * 5  # covers any satisfiable day/month/weekday combination, e.g. Feb 29


class ScheduleError(ValueError):
    """The expression is not a six-field NCRONTAB schedule, or never occurs."""


@dataclass(frozen=True)
class Schedule:
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]

    @classmethod
    def parse(cls, expression: str) -> "Schedule":
        """Parse a schedule. Raises ScheduleError."""
        fields = expression.split()
        if len(fields) != 6:
            raise ScheduleError(f"NCRONTAB needs 6 fields (second minute hour day month day-of-week): {expression!r}")
        values = [_parse_field(text, low, high, expression) for text, (low, high) in zip(fields, _RANGES)]
        return cls(
            seconds=tuple(sorted(values[0])),
            minutes=tuple(sorted(values[1])),
            hours=tuple(sorted(values[2])),
            days=frozenset(values[3]),
            months=frozenset(values[4]),
            weekdays=frozenset(values[5]),
        )

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment` (same tzinfo). Raises ScheduleError if none."""
        start = moment.replace(microsecond=0) + timedelta(seconds=1)
        for offset in range(_SEARCH_DAYS):
            day = start.date() + timedelta(days=offset)
            if not self._matches_day(day.day, day.month, (day.weekday() + 1) % 7):
                continue
            floor = (start.hour, start.minute, start.second) if offset == 0 else (0, 0, 0)
            for hour in self.hours:
                if hour < floor[0]:
                    continue
                for minute in self.minutes:
                    if (hour, minute) < floor[:2]:
                        continue
                    for second in self.seconds:
                        if (hour, minute, second) >= floor:
                            return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=moment.tzinfo)
        raise ScheduleError(f"schedule never occurs: {self}")

    def _matches_day(self, day: int, month: int, weekday: int) -> bool:
        return day in self.days and month in self.months and weekday in self.weekdays


def _parse_field(text: str, low: int, high: int, expression: str) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if span == "*":
                first, last = low, high
            elif "-" in span:
                first, last = (int(v) for v in span.split("-", 1))
            else:  # "5/15" counts from 5 to the field's end
                first = int(span)
                last = high if step_text else first
        except ValueError as exc:
            raise ScheduleError(f"bad field {text!r} in {expression!r}") from exc
        if step < 1 or not low <= first <= last <= high:
            raise ScheduleError(f"field {text!r} in {expression!r} must lie in {low}-{high}")
        values.update(range(first, last + 1, step))
    return values
