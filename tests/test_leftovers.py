"""A killed grader's run folders (with the tmpfs mounted on /out) are swept by the next one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from grader.leftovers import sweep
from grader.sandbox.base import pid_namespace, temp_prefix
from grader.sandbox.cgroups import mount_points

MAKE_AND_DIE = textwrap.dedent("""
    import os, signal, sys, tempfile
    from pathlib import Path
    from grader.sandbox.base import temp_prefix
    from grader.sandbox.outdir import OutputFolder
    work = Path(sys.argv[1])
    folder = OutputFolder(work / "out", work_dir=work, limit_bytes=2**20, can_mount=True)
    (folder.prepare() / "partial.npy").write_bytes(b"x" * 1000)
    Path(tempfile.mkdtemp(prefix=temp_prefix("grade"), dir=work), "code.py").write_text("secret")
    os.close(tempfile.mkstemp(prefix=temp_prefix("archive") + "7-", dir=work)[0])
    print(folder.mount_point, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_killed_graders_run_folders_and_mounts_are_removed(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", MAKE_AND_DIE, str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == -9, done.stderr
    mounted = Path(done.stdout.strip())
    assert mounted in mount_points()  # the killed process could not unmount its /out
    live = tmp_path / (temp_prefix("grade") + "mine")  # ours: this process is alive
    live.mkdir()
    foreign = tmp_path / f"grade-{int(pid_namespace()) + 1}.999999999-x"  # another pid namespace
    foreign.mkdir()
    unrelated = tmp_path / "grade-notes"
    unrelated.mkdir()
    before = {p.name for p in tmp_path.iterdir()}
    assert sum(name.startswith(("grade-", "grader-run-", "archive-")) for name in before) == 6

    removed = sweep(tmp_path)

    assert {p.name for p in removed} == before - {live.name, foreign.name, unrelated.name, "out"}
    assert len(removed) == 3
    assert mounted not in mount_points()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, foreign.name, unrelated.name, "out"])
    assert sweep(tmp_path) == []
    assert os.path.isdir(live)
