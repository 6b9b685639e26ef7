"""Roadmap progress: count the ticked boxes in ROADMAP.md, keep its counters true, check its artefacts.

Usage (from the repo root):
    python -m tools.roadmap status                 # per-phase progress from the ticked boxes
    python -m tools.roadmap status --sync          # ...and rewrite the file's counters to match
    python -m tools.roadmap verify [--verbose]     # ticked boxes vs. artefacts on disk
Options: --file PATH (default: ROADMAP.md at the repo root), --root PATH (where artefact paths are
resolved; default: the roadmap's folder).

Counting rules
- A phase is a `# PHASE N: TITLE` heading. Its tasks are *every* checkbox (`- [ ]`, `- [x]`, `- [X]`)
  from that heading to the next level-1 heading: the weeks, the "Phase N Summary" deliverables
  checklist, and (for Phase 5) the Week 21 buffer, since all of them sit under the phase heading.
  Other level-1 headings (FINAL DELIVERABLES, COMPLETION LOG) end a phase and are never counted.
- A week is a `## Week K: ...` heading; its tasks are the checkboxes up to the next `#`/`##` heading.
- The boxes of a `### ...` subsection whose title says "Choose ONE" (Week 17's project options) are
  alternatives: together they count as one task, done when any of them is ticked.
- The total is the sum over phases. Lines inside ``` fences are never parsed as headings or boxes.

`--sync` rewrites exactly these, in place and atomically; every other byte stays as it was:
  the bar lines (`<label>[##--------] a/b tasks  p%`) inside code fences, labels kept, `Phase N:`
  and `TOTAL` lines only; the "Tasks" column of the table whose header starts `| Phase |`;
  `**Week K Progress:** a/b tasks`; and `**Total Tasks:** a/b complete` (the enclosing phase's count).

`verify` maps checkbox text to artefacts through ARTEFACTS below (case-insensitive substring; the
longest matching key wins, so "DF-trained model checkpoint" is not read as "Trained model checkpoint").
It reports ticked boxes whose artefact is missing (exit 1) and unticked boxes whose artefact exists
(a warning, exit 0). Boxes with no mapping are "not machine-checkable", listed with --verbose.
Exit code 2 means the roadmap could not be read or parsed.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from common.errors import UserError

DEFAULT_ROADMAP = Path(__file__).resolve().parents[1] / "ROADMAP.md"
BAR_WIDTH = 10

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
PHASE_TITLE = re.compile(r"^PHASE\s+(\d+)\s*:\s*(.+)$", re.IGNORECASE)
WEEK_TITLE = re.compile(r"^Week\s+(\d+)\s*:", re.IGNORECASE)
BOX = re.compile(r"^\s*[-*]\s+\[([ xX])\]\s+(.*?)\s*$")
# Counter lines --sync rewrites; the groups keep everything around the numbers (incl. any "\r").
BAR_LINE = re.compile(r"^(?P<label>.*?)\[[#-]{%d}\]\s+\d+/\d+ tasks\s+\d+%%(?P<end>\s*)$" % BAR_WIDTH)
WEEK_PROGRESS = re.compile(r"^(\*\*Week (\d+) Progress:\*\*\s*)\d+/\d+( tasks.*)$", re.DOTALL)
TOTAL_TASKS = re.compile(r"^(\*\*Total Tasks:\*\*\s*)\d+/\d+( complete.*)$", re.DOTALL)
RESULTS = re.compile(r"^##\s+Results\b", re.MULTILINE)


class RoadmapError(UserError):
    """The roadmap file is missing or has no phases; the message says which file."""


@dataclass(frozen=True)
class Box:
    lineno: int  # 1-based, for reports
    ticked: bool
    text: str
    phase: int | None  # None outside any phase (e.g. FINAL DELIVERABLES)
    week: int | None
    choice: int | None = None  # line of the "Choose ONE" heading it is an alternative under


@dataclass
class Roadmap:
    path: Path
    lines: list[str]  # split on "\n" only, so "\n".join(lines) is the file byte for byte
    phases: dict[int, str] = field(default_factory=dict)  # number -> display title, in file order
    boxes: list[Box] = field(default_factory=list)
    line_phase: list[int | None] = field(default_factory=list)  # enclosing phase of each line
    fenced: list[bool] = field(default_factory=list)  # line is a ``` fence or inside one

    def count(self, phase: int | None = None, week: int | None = None) -> tuple[int, int]:
        """(ticked, total) over the boxes of a phase, a week, or (neither given) all phases."""
        if week is not None:
            sel = [b for b in self.boxes if b.week == week]
        elif phase is not None:
            sel = [b for b in self.boxes if b.phase == phase]
        else:
            sel = [b for b in self.boxes if b.phase is not None]
        tasks = [b.ticked for b in sel if b.choice is None]
        choices: dict[int, bool] = {}
        for b in sel:
            if b.choice is not None:  # a group of alternatives is one task, done by any of them
                choices[b.choice] = choices.get(b.choice, False) or b.ticked
        tasks += choices.values()
        return sum(tasks), len(tasks)


def _display_title(title: str) -> str:
    """'VLA FINETUNING' -> 'VLA Finetuning': headings are shouted, but short all-caps words are acronyms."""
    if not title.isupper():
        return title
    small = {"A", "AN", "AND", "OF", "THE", "TO", "IN", "FOR", "ON", "VS"}
    words = title.split()
    return " ".join(w if len(w) <= 3 and w.isalpha() and w not in small else w.title() for w in words)


def parse(text: str, path: Path) -> Roadmap:
    """One pass over the lines, tracking the enclosing phase / week / "Choose ONE" group."""
    rm = Roadmap(path, text.split("\n"))
    phase = week = choice = None
    in_fence = False
    for i, line in enumerate(rm.lines):
        fence_line = line.lstrip().startswith("```")
        in_fence ^= fence_line
        heading = None if in_fence or fence_line else HEADING.match(line)
        if heading and len(heading.group(1)) <= 3:
            level, title = len(heading.group(1)), heading.group(2)
            if level == 1:
                pm = PHASE_TITLE.match(title)
                phase = int(pm.group(1)) if pm else None
                if pm:
                    rm.phases[int(pm.group(1))] = _display_title(pm.group(2).strip())
            if level <= 2:
                wm = WEEK_TITLE.match(title) if level == 2 else None
                week = int(wm.group(1)) if wm else None
            choice = i if level == 3 and "choose one" in title.lower() else None
        box = None if in_fence or fence_line else BOX.match(line)
        if box:
            rm.boxes.append(Box(i + 1, box.group(1) != " ", box.group(2), phase, week, choice))
        rm.line_phase.append(phase)
        rm.fenced.append(in_fence or fence_line)
    if not rm.phases:
        raise RoadmapError(f"no '# PHASE N: TITLE' headings found in {path}")
    return rm


def load(path: Path) -> Roadmap:
    if not path.is_file():
        raise RoadmapError(f"roadmap file not found: {path}")
    # newline="" keeps "\r\n" intact, so --sync can leave untouched lines byte-for-byte identical.
    with open(path, encoding="utf-8", newline="") as f:
        return parse(f.read(), path)


# ---------------------------------------------------------------- status and --sync

def bar(done: int, total: int) -> tuple[str, int]:
    """(bar, percent), both rounded, but never full or 100% before every box is ticked."""
    frac = done / total if total else 0.0
    filled, pct = int(frac * BAR_WIDTH + 0.5), int(frac * 100 + 0.5)
    if done < total:
        filled, pct = min(filled, BAR_WIDTH - 1), min(pct, 99)
    return "#" * filled + "-" * (BAR_WIDTH - filled), pct


def status_lines(rm: Roadmap) -> list[str]:
    rows = [(f"Phase {n}: {title}", *rm.count(phase=n)) for n, title in rm.phases.items()]
    rows.append(("TOTAL", *rm.count()))
    width = max(len(r[0]) for r in rows)
    out = []
    for name, done, total in rows:
        b, pct = bar(done, total)
        out.append(f"{name:<{width}}  [{b}] {f'{done}/{total}':>7}  {pct:>3}%")
    return out


def _sync_bar_line(rm: Roadmap, line: str) -> str:
    m = BAR_LINE.match(line)
    if not m:
        return line
    label = m.group("label")
    pm = re.match(r"\s*Phase\s+(\d+)\s*:", label)
    if pm and int(pm.group(1)) in rm.phases:
        done, total = rm.count(phase=int(pm.group(1)))
    elif label.lstrip().upper().startswith("TOTAL"):
        done, total = rm.count()
    else:
        return line
    b, pct = bar(done, total)
    tasks = f"{done}/{total} tasks"
    # The seed pads "a/b tasks" to 12 columns so the percentages line up; keep that layout.
    return f"{label}[{b}] {tasks:<{max(12, len(tasks) + 1)}}{pct}%{m.group('end')}"


def _sync_table(rm: Roadmap, lines: list[str]) -> None:
    """Rewrite the "Tasks" cell of every `| N: ... |` row of the table whose header starts `| Phase |`."""
    col = None
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("|"):
            col = None  # a table ends at its first non-row line
            continue
        cells = line.split("|")
        names = [c.strip() for c in cells]
        if col is None:
            if len(names) > 1 and names[1] == "Phase" and "Tasks" in names:
                col = names.index("Tasks")
            continue
        pm = re.match(r"(\d+):", names[1]) if len(names) > col else None
        if pm and int(pm.group(1)) in rm.phases:
            done, total = rm.count(phase=int(pm.group(1)))
            cells[col] = f" {done}/{total} "
            lines[i] = "|".join(cells)


def synced_lines(rm: Roadmap) -> list[str]:
    weeks = {b.week for b in rm.boxes if b.week is not None}
    out = []
    for line, phase, fenced in zip(rm.lines, rm.line_phase, rm.fenced):
        if fenced:
            line = _sync_bar_line(rm, line)
        elif (m := WEEK_PROGRESS.match(line)) and int(m.group(2)) in weeks:
            done, total = rm.count(week=int(m.group(2)))
            line = f"{m.group(1)}{done}/{total}{m.group(3)}"
        elif (m := TOTAL_TASKS.match(line)) and phase is not None:
            done, total = rm.count(phase=phase)
            line = f"{m.group(1)}{done}/{total}{m.group(2)}"
        out.append(line)
    _sync_table(rm, out)
    return out


def write_atomic(path: Path, text: str) -> None:
    """Write via a temp file in the same folder + os.replace, so a crash never leaves half a roadmap."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def sync(rm: Roadmap) -> int:
    """Rewrite the counters in rm.path; return how many lines changed (0: already in sync, no write)."""
    new = synced_lines(rm)
    changed = sum(a != b for a, b in zip(rm.lines, new))
    if changed:
        write_atomic(rm.path, "\n".join(new))
        rm.lines = new
    return changed


# ---------------------------------------------------------------- verify

@dataclass(frozen=True)
class Check:
    what: str  # human-readable description of the artefact, for reports
    exists: Callable[[Path], bool]  # given the repo root


def nonempty_file(rel: str) -> Check:
    # Non-empty, because an empty placeholder file is not a written note.
    def exists(root: Path) -> bool:
        return (root / rel).is_file() and (root / rel).stat().st_size > 0
    return Check(f"{rel} (non-empty)", exists)


def readme_with_results(pkg: str) -> Check:
    def exists(root: Path) -> bool:
        readme = root / pkg / "README.md"
        # A README without results is a stub; the section is what makes the phase "written up".
        return readme.is_file() and RESULTS.search(readme.read_text(encoding="utf-8")) is not None
    return Check(f"{pkg}/README.md with a '## Results' section", exists)


def checkpoint(phase: int, dataset: str | None = None, marker: str | None = None) -> Check:
    """A run of the phase with weights under outputs/, or a release of the phase (releases/, shipped with the repo,
    so a fresh clone satisfies its ticked boxes); with `dataset`, only those whose config.yaml trained on it; with
    `marker`, only finished runs and releases holding that export marker (phase 4's tokenizer is not a UWM)."""
    def trained_on(config: Path) -> bool:
        if marker is not None and not ((config.parent / "export" / marker).is_file()
                                       or (config.parent / marker).is_file()):
            return False
        if dataset is None:
            return True
        import yaml
        return config.is_file() and ((yaml.safe_load(config.read_text()) or {}).get("data") or {}).get("name") == dataset

    def exists(root: Path) -> bool:
        runs = root / "outputs" / f"phase{phase}"
        found = [*runs.glob("*/checkpoints/**/*"), *runs.glob("*/export/*.safetensors")]
        # checkpoints/<file> and export/<file> both sit one level below the run folder
        if any(p.is_file() and p.stat().st_size > 0 and trained_on(p.parents[1] / "config.yaml") for p in found):
            return True
        releases = [m.parent for m in (root / "releases" / f"phase{phase}").glob("*/release.json")]
        return any(any(r.rglob("*.safetensors")) and trained_on(r / "config.yaml") for r in releases)
    runs = f"outputs/phase{phase}/*"
    on = (f" trained on {dataset}" if dataset else "") + (f" with {marker}" if marker else "")
    return Check(f"{runs}/checkpoints/* or {runs}/export/*.safetensors or releases/phase{phase}/*{on}", exists)


PHASE_DIRS = {0: "phase0_diffusion", 1: "phase1_world_model", 2: "phase2_diffusion_forcing",
              3: "phase3_vla", 4: "phase4_uwm", 5: "phase5_integration"}
_DF_ANALYSIS = nonempty_file("notes/diffusion-forcing-what-it-buys-you.md")
_MATH_NOTES = nonempty_file("notes/diffusion-fundamentals.md")

# Checkbox-text substring -> the artefact it promises. Keys are matched case-insensitively and the
# longest match wins. Add a row when a new deliverable becomes checkable; keep keys specific.
ARTEFACTS: dict[str, Check] = {
    "`notes/diffusion-fundamentals.md`": _MATH_NOTES,
    "Write math notes": _MATH_NOTES,
    "MNIST model checkpoint": checkpoint(0, "mnist"),
    "CIFAR model checkpoint": checkpoint(0, "cifar10"),
    "Trained model checkpoint": checkpoint(1),  # Phase 1 summary's wording
    "DF-trained model checkpoint": checkpoint(2),
    "Finetuned SmolVLA checkpoint": checkpoint(3),
    "UWM model checkpoint": checkpoint(4, marker="uwm.json"),
    "architecture design document": nonempty_file("notes/uwm-architecture.md"),  # week 13
    "Diffusion Forcing: What It Buys You": _DF_ANALYSIS,  # week 8 deliverable and final deliverables
    "Analysis document": _DF_ANALYSIS,  # "Write analysis document" (week 8), Phase 2 summary
    # "Finetuning VLAs: A Practical Guide", 'Create "Finetuning VLAs" guide', "...VLAs Practically"
    "Finetuning VLAs": nonempty_file("notes/finetuning-vlas-guide.md"),
    **{f"Phase {n} README": readme_with_results(pkg) for n, pkg in PHASE_DIRS.items()},
}


def check_for(text: str) -> Check | None:
    hits = [key for key in ARTEFACTS if key.lower() in text.lower()]
    return ARTEFACTS[max(hits, key=len)] if hits else None


@dataclass
class Report:
    missing: list[tuple[Box, Check]]  # ticked, artefact absent: the roadmap claims too much
    unticked: list[tuple[Box, Check]]  # artefact present, box open: the roadmap claims too little
    unmapped: list[Box]
    checked: int


def verify(rm: Roadmap, root: Path) -> Report:
    report = Report([], [], [], 0)
    for box in rm.boxes:  # all boxes, including FINAL DELIVERABLES outside the phases
        check = check_for(box.text)
        if check is None:
            report.unmapped.append(box)
            continue
        report.checked += 1
        present = check.exists(root)
        if box.ticked and not present:
            report.missing.append((box, check))
        elif present and not box.ticked:
            report.unticked.append((box, check))
    return report


def print_report(report: Report, rm: Roadmap, root: Path, verbose: bool) -> None:
    name = rm.path.name
    for title, items in (("Ticked but missing", report.missing), ("Done but unticked", report.unticked)):
        if items:
            print(f"{title} ({len(items)}):")
            for box, check in items:
                print(f"  {name}:{box.lineno}: {box.text}\n      -> {check.what}")
    if verbose and report.unmapped:
        print(f"Not machine-checkable ({len(report.unmapped)}):")
        for box in report.unmapped:
            print(f"  {name}:{box.lineno}: [{'x' if box.ticked else ' '}] {box.text}")
    print(f"verify: {report.checked} checkable boxes, {len(report.missing)} ticked-but-missing, "
          f"{len(report.unticked)} done-but-unticked, {len(report.unmapped)} not machine-checkable "
          f"(artefacts under {root})")


# ---------------------------------------------------------------- CLI

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.roadmap",
                                     description="Roadmap progress, counters and artefact checks.")
    parser.add_argument("command", choices=["status", "verify"])
    parser.add_argument("--sync", action="store_true", help="status: rewrite the file's counters to match")
    parser.add_argument("--file", type=Path, default=DEFAULT_ROADMAP, help="roadmap (default: %(default)s)")
    parser.add_argument("--root", type=Path, help="verify: artefact base folder (default: the roadmap's)")
    parser.add_argument("-v", "--verbose", action="store_true", help="verify: list unmapped boxes too")
    args = parser.parse_args(argv)
    if args.sync and args.command != "status":
        parser.error("--sync only applies to 'status'")
    try:
        rm = load(args.file)
    except RoadmapError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    if args.command == "status":
        if args.sync:
            changed = sync(rm)
            print(f"synced {rm.path}: {changed} line(s) updated" if changed else f"{rm.path} already in sync")
        print("\n".join(status_lines(rm)))
        return 0
    root = args.root if args.root is not None else rm.path.resolve().parent
    report = verify(rm, root)
    print_report(report, rm, root, args.verbose)
    return 1 if report.missing else 0


if __name__ == "__main__":
    sys.exit(main())
