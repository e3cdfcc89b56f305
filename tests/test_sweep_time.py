"""The sweep's wall time is the union of the groups' generation spans: load and unload lie outside them,
and groups that run at the same time (on several devices) count once."""

from t2ibench.harness.worker import GroupReport
from t2ibench.orchestration import sweep_seconds


def _group(start: float, end: float, load_ms: float = 5000.0) -> GroupReport:
    return GroupReport(("m",), "cpu", load_ms, 100.0, start, end)


def test_sequential_groups_add_up_without_their_load_time():
    assert sweep_seconds([_group(10.0, 12.0), _group(20.0, 23.5)]) == 5.5


def test_concurrent_groups_count_once():
    # two devices: [0, 10] and [2, 8] overlap entirely; [9, 14] extends the first
    assert sweep_seconds([_group(0.0, 10.0), _group(2.0, 8.0), _group(9.0, 14.0)]) == 14.0
    # subtracting the summed load times would have made this negative
    assert sweep_seconds([_group(0.0, 1.0, load_ms=60_000), _group(0.5, 1.5, load_ms=60_000)]) == 1.5


def test_no_groups_no_time():
    assert sweep_seconds([]) == 0.0
