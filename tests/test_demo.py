"""`watcher demo` shows the product offline with the shipped feeds.yaml, as the README promises."""

from __future__ import annotations

import email
import subprocess
import sys
from email import policy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_polls_sample_feeds_and_writes_the_alert_emails(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "watcher", "-c", str(ROOT / "feeds.yaml"), "demo", "--dir", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Jen Zhu Scott (statement" in result.stdout
    assert "Scott Freeman" not in result.stdout  # the sample's near-miss name is not a hit
    emails = sorted((out / "mail").glob("*.eml"))
    assert emails and all(str(p.relative_to(tmp_path)) in result.stdout or str(p) in result.stdout for p in emails)
    subjects = [email.message_from_bytes(p.read_bytes(), policy=policy.default)["Subject"] for p in emails]
    assert any(s.startswith("[watcher] Jen Zhu Scott said:") for s in subjects)
    assert (out / "demo.db").is_file()


def test_demo_runs_again_from_scratch(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "watcher", "-c", str(ROOT / "feeds.yaml"), "demo", "--dir", str(tmp_path / "d")]
    first = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    second = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert first.returncode == second.returncode == 0, second.stderr
    assert len(list((tmp_path / "d" / "mail").glob("*.eml"))) == first.stdout.count(".eml")
