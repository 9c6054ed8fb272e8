"""Where a grading run reads and writes (autograder/grading/course.py)."""
from pathlib import Path

from autograder.execution.sandbox import database_dirs
from autograder.grading.course import Course, jobs, uses_optimizers

ROOT = Path(__file__).resolve().parent.parent


def test_the_work_folder_and_gradebook_default_to_the_course(tmp_path):
    course = Course(root=tmp_path)
    assert course.work == tmp_path.resolve()
    assert course.db_url.startswith(f"sqlite:///{tmp_path.resolve() / 'gradebook.db'}")
    assert course.submitted_dir("a1", "s1") == tmp_path.resolve() / "submitted" / "s1" / "a1"
    assert course.autograded_dir("a1", "s1") == tmp_path.resolve() / "autograded" / "s1" / "a1"


def test_the_sandbox_hides_the_course_the_work_the_gradebook_and_the_runs_folders(tmp_path):
    course = Course(root=tmp_path / "course", work=tmp_path / "work",
                    db_url=f"sqlite:///{tmp_path / 'db' / 'gradebook.db'}")
    course.hide(tmp_path / "submissions", tmp_path / "out", tmp_path / "out")
    hidden = course.executor_hidden()
    for folder in ("course", "work", "db", "submissions", "out"):
        assert str(tmp_path / folder) in hidden, folder
    assert course.hidden.count(str(tmp_path / "out")) == 1
    assert set(course.config().ExecuteSandboxed.hidden) >= {str(tmp_path / "course"), str(tmp_path / "work")}


def test_a_database_servers_socket_folders_are_hidden(monkeypatch):
    monkeypatch.setattr("autograder.execution.sandbox.SERVER_SOCKET_DIRS", ())  # whatever runs on this machine
    assert database_dirs("postgresql+psycopg://grader@localhost/gradebook") == []
    assert database_dirs("postgresql+psycopg://grader@/gradebook?host=/srv/pg") == ["/srv/pg"]
    assert database_dirs("postgresql+psycopg://grader@%2Fsrv%2Fpg/gradebook") == ["/srv/pg"]
    assert database_dirs("sqlite:////srv/course/gradebook.db?timeout=60") == ["/srv/course"]


def test_jobs_default_to_one_per_core(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert jobs(Course(root=ROOT)) == 6 and jobs(Course(root=ROOT, jobs=2)) == 2


def test_only_assignments_that_train_warm_the_optimizers():
    course = Course(root=ROOT)
    assert uses_optimizers(course, "tied_layers") and not uses_optimizers(course, "param_access")
