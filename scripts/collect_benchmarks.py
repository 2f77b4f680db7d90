"""Write docs/benchmarks.md: a summary table followed by every benchmark's latest output.

Each benchmark script writes its own page under docs/benchmarks/; this script joins them so the
numbers can be read on one page. Run it after any benchmark: python scripts/collect_benchmarks.py
"""

from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = ("runner.md", "scoring.md", "rices.md", "canary.md")

INTRODUCTION = """# Benchmarks

Speed, memory and score measurements of flamingo-eval. Every section below is the latest output
of a script in `benchmarks/` (or `scripts/train_canary.py`), with the machine, the versions and
the command that produced it. Timings come from a shared 2-core machine, so the load average is
printed with each; compare numbers within one section, which were measured in the same run.
The separate pages are in `docs/benchmarks/`.
"""


def main() -> None:
    parts = [INTRODUCTION]
    for name in PAGES:
        page = DOCS / "benchmarks" / name
        if not page.is_file():
            continue
        text = page.read_text()
        # Demote the page's headings by one level so they nest under this page's title.
        demoted = "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())
        parts.append(demoted)
    (DOCS / "benchmarks.md").write_text("\n\n".join(parts).rstrip() + "\n")
    print(f"wrote {DOCS / 'benchmarks.md'}")


if __name__ == "__main__":
    main()
