"""Tests for tools/roadmap.py: counting, --sync, verify, and the real ROADMAP.md. Fast and offline."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools.roadmap import DEFAULT_ROADMAP, bar, load, main, synced_lines

REPO = Path(__file__).resolve().parents[1]

# Two phases, three weeks, a "Choose ONE" group, a non-phase section, and counters that are all wrong.
FIXTURE = """\
# Test Roadmap

## Overall Progress

```
Phase 0: Basics    [##########] 9/9 tasks   100%
Phase 1: Advanced  [----------] 0/1 tasks   0%

TOTAL PROGRESS     [----------] 0/10 tasks 0%
```

| Phase | Weeks | Status | Tasks |
|-------|-------|--------|-------|
| 0: Basics | 1 | 🔲 | 7/7 |
| 1: Advanced | 2-3 | 🔲 | 0/0 |
| Buffer | 4 | 🔲 | - |

---

# PHASE 0: BASICS

## Week 1: Start (Jan 1-7)

### Reading
- [x] Read a paper
- [X] Write math notes explaining things
- [ ] Phase 0 README and notes

**Week 1 Progress:** 9/9 tasks

## Phase 0 Summary

**Total Tasks:** 1/1 complete

**Deliverables Checklist:**
- [x] `notes/diffusion-fundamentals.md`
- [ ] MNIST model checkpoint  

# PHASE 1: ADVANCED VLA

## Week 2: Middle

- [x] Do thing
- [ ] Do other thing

**Week 2 Progress:** 0/0 tasks

## Week 3: End

### Project Options (Choose ONE):
- [ ] **Option A:** one
- [x] **Option B:** two

### Implementation
- [ ] Trained model checkpoint

**Week 3 Progress:** 5/5 tasks

**Total Tasks:** 0/0 complete

# FINAL DELIVERABLES
- [x] Analysis: "Diffusion Forcing: What It Buys You"
"""

# What --sync must turn the wrong counters into (line index -> new line); all other lines stay.
SYNCED = {
    5: "Phase 0: Basics    [######----] 3/5 tasks   60%",
    6: "Phase 1: Advanced  [#####-----] 2/4 tasks   50%",
    8: "TOTAL PROGRESS     [######----] 5/9 tasks   56%",
    13: "| 0: Basics | 1 | 🔲 | 3/5 |",
    14: "| 1: Advanced | 2-3 | 🔲 | 2/4 |",
    28: "**Week 1 Progress:** 2/3 tasks",
    32: "**Total Tasks:** 3/5 complete",
    45: "**Week 2 Progress:** 1/2 tasks",
    56: "**Week 3 Progress:** 1/2 tasks",
    58: "**Total Tasks:** 2/4 complete",
}


@pytest.fixture
def roadmap(tmp_path: Path) -> Path:
    path = tmp_path / "ROADMAP.md"
    path.write_text(FIXTURE, encoding="utf-8")
    return path


def test_counts(roadmap: Path) -> None:
    rm = load(roadmap)
    assert rm.phases == {0: "Basics", 1: "Advanced VLA"}
    assert rm.count(phase=0) == (3, 5)  # weeks + summary checklist
    assert rm.count(phase=1) == (2, 4)  # the two options count as one task, done
    assert rm.count(week=1) == (2, 3)
    assert rm.count(week=3) == (1, 2)
    assert rm.count() == (5, 9)  # FINAL DELIVERABLES is not a phase


def test_status_output(roadmap: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--file", str(roadmap)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Phase 0: Basics") and "[######----]" in lines[0] and "3/5" in lines[0]
    assert lines[0].endswith("60%")
    assert lines[-1].startswith("TOTAL") and "5/9" in lines[-1] and lines[-1].endswith("56%")
    assert roadmap.read_text(encoding="utf-8") == FIXTURE  # status alone never writes


def test_bar_rounding() -> None:
    assert bar(5, 18) == ("###-------", 28)
    assert bar(17, 18) == ("#########-", 94)
    assert bar(199, 200) == ("#########-", 99)  # never shows done before it is
    assert bar(4, 4) == ("##########", 100)
    assert bar(0, 0) == ("----------", 0)


def test_sync_fixes_counters_only_and_is_idempotent(
    roadmap: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--sync", "--file", str(roadmap)]) == 0
    after = roadmap.read_text(encoding="utf-8")
    before_lines, after_lines = FIXTURE.split("\n"), after.split("\n")
    assert len(after_lines) == len(before_lines)
    for i, (old, new) in enumerate(zip(before_lines, after_lines)):
        assert new == SYNCED.get(i, old), f"line {i}"
    assert "10 line(s) updated" in capsys.readouterr().out

    assert main(["status", "--sync", "--file", str(roadmap)]) == 0
    assert roadmap.read_text(encoding="utf-8") == after
    assert "already in sync" in capsys.readouterr().out
    assert not list(roadmap.parent.glob(".*.tmp"))  # the atomic write cleaned up after itself


def test_sync_keeps_crlf(tmp_path: Path) -> None:
    path = tmp_path / "crlf.md"
    path.write_bytes(FIXTURE.replace("\n", "\r\n").encode("utf-8"))
    assert main(["status", "--sync", "--file", str(path)]) == 0
    data = path.read_bytes().decode("utf-8")
    assert data.count("\r\n") == FIXTURE.count("\n") and "\n" not in data.replace("\r\n", "")
    assert "**Week 1 Progress:** 2/3 tasks\r\n" in data


def test_verify(roadmap: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = roadmap.parent
    verify = ["verify", "--file", str(roadmap), "--root", str(root)]

    # Nothing exists yet: the three ticked, checkable boxes are ticked-but-missing.
    assert main(verify) == 1
    out = capsys.readouterr().out
    assert "Ticked but missing (3):" in out and "Done but unticked" not in out
    assert "notes/diffusion-fundamentals.md" in out and "diffusion-forcing-what-it-buys-you.md" in out

    # An artefact for an open box is a warning, not a failure.
    (root / "notes").mkdir()
    (root / "notes" / "diffusion-fundamentals.md").write_text("# Notes\n")
    (root / "notes" / "diffusion-forcing-what-it-buys-you.md").write_text("# DF\n")
    ckpt = root / "outputs" / "phase0" / "run1" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "last.pt").write_bytes(b"weights")
    (ckpt.parent / "config.yaml").write_text("data:\n  name: fashion_mnist\n")
    assert main(verify) == 0
    assert "Done but unticked" not in capsys.readouterr().out  # a Fashion-MNIST model is not the MNIST one
    (ckpt.parent / "config.yaml").write_text("data:\n  name: mnist\n")
    assert main(verify) == 0
    out = capsys.readouterr().out
    assert "Ticked but missing" not in out
    assert "Done but unticked (1):" in out and "MNIST model checkpoint" in out

    # A README counts only once it has a Results section.
    (root / "phase0_diffusion").mkdir()
    (root / "phase0_diffusion" / "README.md").write_text("# Phase 0\n\nTODO\n")
    assert main(verify) == 0
    assert "Done but unticked (1):" in capsys.readouterr().out
    (root / "phase0_diffusion" / "README.md").write_text("# Phase 0\n\n## Results\n\nFID 3.1\n")
    assert main(verify + ["--verbose"]) == 0
    out = capsys.readouterr().out
    assert "Done but unticked (2):" in out and "Phase 0 README and notes" in out
    assert "Not machine-checkable" in out and "Do other thing" in out


def test_verify_trained_checkpoint_is_not_df(roadmap: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # "Trained model checkpoint" is Phase 1's; a Phase 2 checkpoint must not satisfy it.
    export = roadmap.parent / "outputs" / "phase2" / "df" / "export"
    export.mkdir(parents=True)
    (export / "model.safetensors").write_bytes(b"x")
    main(["verify", "--file", str(roadmap)])  # --root defaults to the roadmap's folder
    assert "Trained model checkpoint" not in capsys.readouterr().out


def test_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.md"
    assert main(["status", "--file", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    flat = tmp_path / "flat.md"
    flat.write_text("# Plan\n- [ ] something\n")
    assert main(["verify", "--file", str(flat)]) == 2
    assert "no '# PHASE N: TITLE' headings" in capsys.readouterr().err


def test_cli_subprocess(roadmap: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "tools.roadmap", "status", "--file", str(roadmap)],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Phase 1: Advanced VLA" in result.stdout and "2/4" in result.stdout


def test_real_roadmap_parses_and_is_clean() -> None:
    rm = load(DEFAULT_ROADMAP)
    assert list(rm.phases) == [0, 1, 2, 3, 4, 5]
    text = DEFAULT_ROADMAP.read_text(encoding="utf-8")
    assert not set("‚√üœ") & set(text), "mojibake left in ROADMAP.md"
    stale = "ROADMAP.md counters disagree with its boxes: run `python -m tools.roadmap status --sync`"
    assert synced_lines(rm) == rm.lines, stale


def test_verify_a_release_satisfies_a_checkpoint_box(roadmap: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A fresh clone has no outputs/, only the releases shipped in the repo: they count, by phase and data set.
    rel = roadmap.parent / "releases" / "phase1" / "diffusion-cpu"
    rel.mkdir(parents=True)
    (rel / "model.safetensors").write_bytes(b"x")
    main(["verify", "--file", str(roadmap)])
    assert "Trained model checkpoint" not in capsys.readouterr().out  # no release.json: not a release
    (rel / "release.json").write_text("{}")
    main(["verify", "--file", str(roadmap)])
    out = capsys.readouterr().out
    assert "Done but unticked (1):" in out and "Trained model checkpoint" in out and "releases/phase1" in out


def test_a_uwm_checkpoint_needs_the_uwm_marker(tmp_path: Path) -> None:
    """Phase 4's tokenizer release holds weights too, but it is not the UWM the box promises."""
    from tools.roadmap import check_for
    check = check_for("UWM model checkpoint")
    rel = tmp_path / "releases" / "phase4" / "tok-cpu"
    rel.mkdir(parents=True)
    for name in ("model.safetensors", "release.json", "config.yaml", "tokenizer.json"):
        (rel / name).write_text("x")
    assert not check.exists(tmp_path)
    (rel / "uwm.json").write_text("{}")
    assert check.exists(tmp_path)
