"""`watcher demo` shows the product offline with the shipped feeds.yaml, as the README promises."""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
from email import policy
from pathlib import Path

from tests.conftest import ROOT


def demo(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watcher", "-c", str(ROOT / "feeds.yaml"), "demo", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )


def test_demo_polls_sample_feeds_and_writes_the_alert_emails(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = demo("--dir", str(out))
    assert result.returncode == 0, result.stderr
    assert "Jen Zhu Scott (statement" in result.stdout
    assert "Scott Freeman" not in result.stdout  # the sample's near-miss name is not a hit
    emails = sorted((out / "mail").glob("*.eml"))
    assert emails and all(str(p.relative_to(tmp_path)) in result.stdout or str(p) in result.stdout for p in emails)
    subjects = [email.message_from_bytes(p.read_bytes(), policy=policy.default)["Subject"] for p in emails]
    assert '[watcher] Jen Zhu Scott calls for a "US plus China" model of AI development (statement)' in subjects
    # A hit on the headline alone still tells the story: the email carries the lead.
    [chips] = [p for p in emails if "Chipmakers brace" in p.read_text()]
    body = email.message_from_bytes(chips.read_bytes(), policy=policy.default).get_body(("plain",))
    assert body is not None
    assert "Lead:      Washington is weighing tighter export controls on advanced GPUs" in body.get_content()
    assert (out / "demo.db").is_file()


def test_demo_runs_again_from_scratch(tmp_path: Path) -> None:
    first = demo("--dir", str(tmp_path / "d"))
    second = demo("--dir", str(tmp_path / "d"))
    assert first.returncode == second.returncode == 0, second.stderr
    assert len(list((tmp_path / "d" / "mail").glob("*.eml"))) == first.stdout.count(".eml")


def test_demo_never_deletes_what_it_did_not_write(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "thesis.txt").write_text("months of work")
    for where in (".", str(work)):
        refused = demo("--dir", where, cwd=work)
        assert refused.returncode == 1, refused.stdout
        assert "is not empty and was not made by `" in refused.stderr and "Traceback" not in refused.stderr
    assert sorted(p.name for p in work.iterdir()) == ["thesis.txt"]

    # In a folder it made, files put there later are kept by the next run.
    assert demo("--dir", "d", cwd=work).returncode == 0
    (work / "d" / "notes.txt").write_text("mine")
    (work / "d" / "mail" / "keep.eml").write_text("mine too")
    again = demo("--dir", "d", cwd=work)
    assert again.returncode == 0, again.stderr
    assert (work / "d" / "notes.txt").read_text() == "mine"
    assert (work / "d" / "mail" / "keep.eml").read_text() == "mine too"
    assert "keep.eml" not in again.stdout


def test_the_command_the_demo_prints_works_as_printed(tmp_path: Path) -> None:
    """Installed into a virtualenv that is not activated, `watcher` is not on PATH: the demo
    must print the command that works, here and now."""
    script = Path(sys.executable).parent / "watcher"
    assert script.is_file(), "watcher is installed in the test environment"
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != script.parent)
    assert shutil.which("watcher", path=path) is None
    env = {**os.environ, "PATH": path}
    run = subprocess.run(
        [str(script), "-c", str(ROOT / "feeds.yaml"), "demo"], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert run.returncode == 0, run.stderr
    [printed] = re.findall(r"see the stored hits: (.*)", run.stdout)
    assert not printed.split()[1].startswith("watcher"), printed
    shown = subprocess.run(["bash", "-c", printed], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "Jen Zhu Scott (statement" in shown.stdout
