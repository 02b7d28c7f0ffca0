"""search.duration: the one way the search writes a duration."""

from search.duration import format_duration


def test_durations_read_in_seconds_minutes_and_hours() -> None:
    assert [format_duration(s) for s in (None, float("inf"), -3, 0.4, 59.4, 61, 3725, 36000)] == [
        "n/a", "n/a", "0 s", "0 s", "59 s", "1 min 01 s", "1 h 02 min 05 s", "10 h 00 min 00 s"]
