"""Several grading machines on one queue: each with its own folders and its own verified copy
of the hidden data, fetching archives from the web app with the job's token."""

from __future__ import annotations

import io
import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, select

from grader.config import load_assignment
from grader.datasets.sync import fingerprint
from grader.pipeline import grade
from leaderboard.claims import claim
from leaderboard.models import Result, Submission
from tests.leaderboard.factories import late_invalid_zip, tiny_good_zip
from tests.leaderboard.helpers import (
    ROOT,
    Stack,
    WorkerProcess,
    api_upload,
    build_stack,
    close_stack,
    grader_settings,
    results_of,
    wait_done,
    worker_env,
)

GRADER = ROOT / ".venv" / "bin" / "grader"


def _machine(tmp: Path, name: str, central_data: Path) -> dict[str, str]:
    """A grading machine's own folders: home (hidden data copied by `grader sync-tests`),
    instance (no uploads: archives come from the web app), and temporary files."""
    home, instance, scratch = (tmp / name / part for part in ("home", "instance", "tmp"))
    for folder in (home, instance, scratch):
        folder.mkdir(parents=True)
    synced = subprocess.run(
        [str(GRADER), "sync-tests", str(central_data)],
        env={**os.environ, "GRADER_HOME": str(home)},
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert f"fingerprint {fingerprint(central_data)}" in synced.stdout
    return {"GRADER_HOME": str(home), "LEADERBOARD_INSTANCE": str(instance), "TMPDIR": str(scratch)}


@pytest.fixture
def cluster(
    tmp_path: Path, grader_home: Path, pg_database: Callable[[], str], redis_url: str
) -> Iterator[Stack]:
    """The web app with PostgreSQL and Redis; no worker yet (tests start their machines)."""
    stack = build_stack(
        tmp_path / "web", grader_home=grader_home, db_url=pg_database(), queue_url=redis_url,
        students=10, workers=0, stale_after_s=6.0,
    )
    yield stack
    close_stack(stack)


# --------------------------------------------------------------------------- the archive endpoint


def test_the_archive_endpoint_opens_only_the_running_job(cluster: Stack) -> None:
    client = cluster.app.test_client()
    body = tiny_good_zip(seed=3)
    sub_id = api_upload(cluster, cluster.roster.secrets["s001"], body).get_json()["id"]
    url = f"/internal/archives/{sub_id}"
    cluster.app.extensions["leaderboard"].queue.flush()  # no worker takes it: we hold it by hand

    assert client.get(url).status_code == 404  # no token
    queued = client.get(url, headers={"Authorization": "Bearer " + "0" * 32})
    assert queued.status_code == 404  # queued: no run holds it yet
    assert queued.get_json() == {"error": "No such job.", "status": 404}

    held = claim(cluster.engine, submission_id=sub_id, worker="machine-a", max_attempts=3)
    assert held is not None
    ok = client.get(url, headers={"Authorization": f"Bearer {held.token}"})
    assert ok.status_code == 200
    assert ok.data == body
    assert ok.headers["X-Archive-SHA256"] == held.archive_sha256
    assert ok.headers["Cache-Control"] == "no-store"
    ok.close()

    wrong = client.get(url, headers={"Authorization": f"Bearer {held.token[:-1]}x"})
    assert wrong.status_code == 404
    other = api_upload(cluster, cluster.roster.secrets["s002"], tiny_good_zip(seed=4)).get_json()["id"]
    assert client.get(f"/internal/archives/{other}",
                      headers={"Authorization": f"Bearer {held.token}"}).status_code == 404

    # The same token deletes the archive (of an upload the run found invalid); nothing else does.
    stored = cluster.settings.upload_dir / f"{held.archive_key}.zip"
    assert client.delete(url).status_code == 404
    assert client.delete(url, headers={"Authorization": f"Bearer {held.token[:-1]}x"}).status_code == 404
    assert client.delete(f"/internal/archives/{other}",
                         headers={"Authorization": f"Bearer {held.token}"}).status_code == 404
    assert stored.exists()
    assert client.delete(url, headers={"Authorization": f"Bearer {held.token}"}).status_code == 204
    assert not stored.exists()
    assert client.get(url, headers={"Authorization": f"Bearer {held.token}"}).status_code == 410


@pytest.mark.slow
def test_a_worker_on_another_machine_deletes_the_zip_of_an_invalid_upload(
    cluster: Stack, grader_home: Path, tmp_path: Path
) -> None:
    machine = _machine(tmp_path, "machine-a", grader_home / "hidden" / "cnn")
    cluster.start_worker(**machine, LEADERBOARD_ARCHIVE_URL=cluster.server.url)
    secret = cluster.roster.secrets["s003"]
    bad = late_invalid_zip()
    ids = [api_upload(cluster, secret, bad, f"notes-{i}.zip").get_json()["id"] for i in range(3)]
    ids.append(api_upload(cluster, secret, tiny_good_zip(seed=5), "good.zip").get_json()["id"])
    statuses = wait_done(cluster, ids, timeout_s=240)
    with Session(cluster.engine) as session:
        keys = {s.id: s.archive_key for s in session.exec(select(Submission)).all()}
    on_disk = {i: (cluster.settings.upload_dir / f"{keys[i]}.zip").exists() for i in ids}
    assert statuses == {**dict.fromkeys(ids[:3], "invalid"), ids[3]: "graded"}
    assert on_disk == {**dict.fromkeys(ids[:3], False), ids[3]: True}


def test_a_worker_without_verified_hidden_data_refuses_to_start(cluster: Stack, tmp_path: Path) -> None:
    home = tmp_path / "bare-machine"
    env = worker_env(cluster.settings, GRADER_HOME=str(home), LEADERBOARD_INSTANCE=str(tmp_path / "i"))
    done = subprocess.run([str(GRADER), "worker"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "hidden test data cannot be used" in done.stderr
    assert "grader sync-tests" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("key", "value"), [("GRADER_SANDBOX_CPUS", "two"),
                                        ("LEADERBOARD_WORKER_THREADS", "many")])
def test_a_worker_with_a_wrong_setting_says_which(cluster: Stack, key: str, value: str) -> None:
    env = worker_env(cluster.settings, **{key: value})
    done = subprocess.run([str(GRADER), "worker"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"a setting is wrong: {key}='{value}' is not a" in done.stderr
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------- two machines


@pytest.mark.slow
def test_two_machines_grade_twelve_uploads_exactly_once_despite_a_killed_worker(
    cluster: Stack, grader_home: Path, tmp_path: Path
) -> None:
    """Two `grader worker` processes, each as its own machine (own home with hidden data from
    `grader sync-tests`, own instance without uploads, own temp), share PostgreSQL and Redis.
    Machine A's worker is SIGKILLed (with its sandbox) in the middle of a job, then restarted as
    a rebooted machine would be; every one of the 12 uploads ends with exactly one result, whose
    status and score are those of grading that zip directly."""
    central = grader_home / "hidden" / "cnn"
    machines = {name: _machine(tmp_path, name, central) for name in ("machine-a", "machine-b")}
    archive_url = {"LEADERBOARD_ARCHIVE_URL": cluster.server.url}
    a = cluster.start_worker(**machines["machine-a"], **archive_url)
    b = cluster.start_worker(**machines["machine-b"], **archive_url, GRADER_SANDBOX_CPUS="1",
                             GRADER_SANDBOX_MEMORY_BYTES=str(3 * 2**30))

    kinds = {"good-0": tiny_good_zip(seed=0), "good-1": tiny_good_zip(seed=1)}
    kinds["bad-finetune"] = _without_finetune(kinds["good-0"])
    plan = [("good-0", "good-1", "bad-finetune")[i % 3] for i in range(12)]
    secrets = [cluster.roster.secrets[f"s{i:03d}"] for i in range(1, 11)]
    ids: dict[int, str] = {}
    for i, kind in enumerate(plan):
        response = api_upload(cluster, secrets[i % 10], kinds[kind], f"{kind}.zip")
        assert response.status_code == 202, response.get_data(as_text=True)
        ids[response.get_json()["id"]] = kind

    def third_job_on_a() -> int | None:
        """The job A is running once it has finished two (so both machines were busy)."""
        with Session(cluster.engine) as session:
            on_a = Submission.worker.endswith(f":{a.proc.pid}")  # type: ignore[union-attr]
            done = session.exec(select(Result).where(
                Result.worker.endswith(f":{a.proc.pid}"))).all()  # type: ignore[union-attr]
            row = session.exec(select(Submission).where(
                Submission.status == "running", on_a)).first()
            return row.id if row is not None and len(done) >= 2 else None

    victim = cluster.wait_for(third_job_on_a, timeout_s=120, what="machine A to start its third job")
    time.sleep(1.0)  # well inside the job: its sandbox is running
    a.kill()
    assert cluster.statuses()[victim] == "running"  # nobody recorded it
    a2 = cluster.start_worker(**machines["machine-a"], **archive_url)  # machine A comes back

    statuses = wait_done(cluster, list(ids), timeout_s=600)
    expected = _direct_results(kinds, grader_home, tmp_path)
    with Session(cluster.engine) as session:
        subs = {s.id: s for s in session.exec(select(Submission)).all()}
        results = session.exec(select(Result)).all()
    assert Counter(r.submission_id for r in results) == Counter(dict.fromkeys(ids, 1))  # once each
    for sub_id, kind in ids.items():
        status, score = expected[kind]
        assert statuses[sub_id] == status, (sub_id, kind, subs[sub_id].message)
        assert subs[sub_id].score == pytest.approx(score), (sub_id, kind)
        assert results_of(cluster, sub_id) == 1
    assert {status for status, _ in expected.values()} == {"graded", "crashed"}  # scores differ
    assert subs[victim].grading_attempts == 2  # started on A, finished after it died
    victim_result = next(r for r in results if r.submission_id == victim)
    assert not victim_result.worker.endswith(f":{a.proc.pid}")
    by_worker = Counter(r.worker.rsplit(":", 1)[1] for r in results)
    assert by_worker[str(a.proc.pid)] >= 2
    assert by_worker[str(b.proc.pid)] > 0
    assert set(by_worker) <= {str(p.proc.pid) for p in (a, b, a2)}
    assert "1 CPUs and 3072 MiB per sandbox" in b.log()  # set outright on machine B
    for worker in (b, a2):
        assert worker.proc.poll() is None, worker.log()
        assert "hidden data" in worker.log()
        assert "verified" in worker.log()
    leftovers = [p for p in Path(machines["machine-a"]["TMPDIR"]).iterdir()
                 if p.name.startswith("grader-run-")]
    assert not leftovers, leftovers  # the restarted worker swept the dead one's run folder


def _without_finetune(good: bytes) -> bytes:
    """The same submission with a FinetuneNet checkpoint of the wrong shape: a lower score."""
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item.filename, src.read("model.pt") if item.filename == "finetuned.pt" else data)
    return out.getvalue()


def _direct_results(kinds: dict[str, bytes], grader_home: Path,
                    tmp_path: Path) -> dict[str, tuple[str, float]]:
    """Each kind's (status, score) from grading its zip directly with `grade()`."""
    spec = load_assignment()
    results = {}
    for kind, body in kinds.items():
        path = tmp_path / f"direct-{kind}.zip"
        path.write_bytes(body)
        result = grade(path, spec, grader_settings(grader_home))
        results[kind] = (result.status.value, result.score)
    return results


# --------------------------------------------------------------------------- grader faults


def _damage(home: Path) -> Callable[[], None]:
    """Damage a machine's hidden data (a label file's bytes, the manifest touched so the worker
    verifies again); the function returned repairs it."""
    root = home / "hidden" / "cnn"
    labels = root / "labels" / "dogs_cats" / "AUG.npy"
    intact = labels.read_bytes()
    labels.write_bytes(intact[:-1] + bytes([intact[-1] ^ 0xFF]))
    manifest = root / "manifest.json"
    manifest.write_bytes(manifest.read_bytes())  # a new mtime: the worker verifies again

    def repair() -> None:
        labels.write_bytes(intact)
        time.sleep(0.01)
        manifest.write_bytes(manifest.read_bytes())

    return repair


def _worker_with_damaged_data(cluster: Stack, grader_home: Path, tmp_path: Path,
                              **env: str) -> tuple[WorkerProcess, Callable[[], None]]:
    """A machine's worker, started on good data that is then damaged; and the repair."""
    machine = _machine(tmp_path, "machine", grader_home / "hidden" / "cnn")
    worker = cluster.start_worker(**machine, LEADERBOARD_ARCHIVE_URL=cluster.server.url, **env)
    cluster.wait_for(lambda: "verified" in worker.log(), timeout_s=60, what="the worker to start")
    return worker, _damage(Path(machine["GRADER_HOME"]))


def _submission(stack: Stack, sub_id: int) -> Submission:
    with Session(stack.engine) as session:
        row = session.get(Submission, sub_id)
        assert row is not None
        return row


@pytest.mark.slow
def test_a_grader_fault_is_graded_again_later_not_shown_to_the_student(
    cluster: Stack, grader_home: Path, tmp_path: Path
) -> None:
    worker, repair = _worker_with_damaged_data(cluster, grader_home, tmp_path,
                                               LEADERBOARD_FAULT_RETRY_AFTER_S="4")
    sub_id = api_upload(cluster, cluster.roster.secrets["s001"], tiny_good_zip(seed=5)).get_json()["id"]

    def released() -> bool:
        row = _submission(cluster, sub_id)
        return row.grading_attempts == 1 and row.status == "queued"

    cluster.wait_for(released, timeout_s=90, what="the faulty run to put the submission back")
    assert results_of(cluster, sub_id) == 0  # the student never sees the fault
    repair()
    assert wait_done(cluster, [sub_id], timeout_s=120) == {sub_id: "graded"}
    row = _submission(cluster, sub_id)
    assert row.grading_attempts == 2
    assert row.counts_attempt is True
    assert results_of(cluster, sub_id) == 1
    assert f"submission {sub_id}: grader fault on run 1 of 3; tried again in 4 s" in worker.log()
    assert "The hidden test data is damaged" in worker.log()


@pytest.mark.slow
def test_a_lasting_grader_fault_ends_as_grader_fault_after_the_last_run(
    cluster: Stack, grader_home: Path, tmp_path: Path
) -> None:
    worker, _ = _worker_with_damaged_data(cluster, grader_home, tmp_path, LEADERBOARD_FAULT_RETRY_AFTER_S="1",
                                          LEADERBOARD_MAX_GRADING_ATTEMPTS="2")
    secret = cluster.roster.secrets["s002"]
    sub_id = api_upload(cluster, secret, tiny_good_zip(seed=6)).get_json()["id"]
    assert wait_done(cluster, [sub_id], timeout_s=120) == {sub_id: "grader_fault"}
    row = _submission(cluster, sub_id)
    assert row.grading_attempts == 2
    assert row.counts_attempt is False  # refunded
    assert results_of(cluster, sub_id) == 1
    client = cluster.app.test_client()
    shown = client.get(f"/api/submissions/{sub_id}", headers={"Authorization": f"Bearer {secret}"}).get_json()
    assert "did not use up an attempt" in shown["result"]["message"]
    assert "grader fault on run 1 of 2" in worker.log()
    assert worker.log().count("The hidden test data is damaged") == 2  # each run met the same fault
