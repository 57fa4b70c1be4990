"""Each sandbox's CPUs and memory: shared out among parallel jobs, or set by the operator."""

from __future__ import annotations

import pytest

from grader.config import Settings, load_assignment
from grader.errors import SpecError
from grader.share import sandbox_cpus, spec_for_jobs


def test_parallel_jobs_share_the_cores_and_never_exceed_the_spec() -> None:
    assert sandbox_cpus(1, 2.0, cores=8) == 2.0  # the spec's share, not the whole machine
    assert sandbox_cpus(4, 2.0, cores=8) == 2.0
    assert sandbox_cpus(8, 2.0, cores=8) == 1.0
    assert sandbox_cpus(3, 2.0, cores=2) == 1.0  # at least one CPU each


def test_the_operator_sets_cpus_and_memory_per_sandbox_from_the_environment() -> None:
    spec = load_assignment()
    settings = Settings.from_env({"GRADER_SANDBOX_CPUS": "1.5",
                                  "GRADER_SANDBOX_MEMORY_BYTES": str(3 * 2**30)})
    graded, cpus = spec_for_jobs(spec, 8, settings.sandbox)
    assert cpus == 1.5  # set outright, whatever the job count
    assert graded.limits.cpus == 1.5
    assert graded.limits.memory_bytes == 3 * 2**30
    assert graded.parts == spec.parts
    assert graded.limits.processes == spec.limits.processes

    default, default_cpus = spec_for_jobs(spec, 1, Settings.from_env({}).sandbox)
    assert default.limits.memory_bytes == spec.limits.memory_bytes
    assert default_cpus == sandbox_cpus(1, spec.limits.cpus)


@pytest.mark.parametrize(("key", "value", "words"), [
    ("GRADER_SANDBOX_CPUS", "two", "is not a number"),
    ("GRADER_SANDBOX_CPUS", "-1", "must not be negative"),
    ("GRADER_SANDBOX_MEMORY_BYTES", "1.5e9", "is not a whole number"),
])
def test_a_bad_setting_is_refused_naming_it(key: str, value: str, words: str) -> None:
    with pytest.raises(SpecError, match=words) as caught:
        Settings.from_env({key: value})
    assert key in str(caught.value)
