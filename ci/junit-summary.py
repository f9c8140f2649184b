#!/usr/bin/env python3
"""A JUnit file as GitHub shows it: a Markdown table for the job summary,
and with --annotate an ::error:: annotation per failed or errored case (on
stdout, where the runner reads workflow commands).

    ci/junit-summary.py report/junit.xml >> "$GITHUB_STEP_SUMMARY"
    ci/junit-summary.py --annotate report/junit.xml

The report job runs it on `repro report --junit`'s file. Standard library
only: the runner's python3.
"""
import sys
import xml.etree.ElementTree as ET


def cell(text):
    return " ".join((text or "").split()).replace("|", "\\|")[:300]


def cases(path):
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        status, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            el = case.find(kind)
            if el is not None:
                status, message = kind, el.get("message") or el.get("type") or ""
                break
        yield case.get("name", "?"), case.get("classname", ""), status, message


def main(argv):
    annotate = "--annotate" in argv
    paths = [a for a in argv if a != "--annotate"]
    if len(paths) != 1:
        print("usage: ci/junit-summary.py [--annotate] JUNIT.xml", file=sys.stderr)
        return 2
    try:
        rows = list(cases(paths[0]))
    except (OSError, ET.ParseError) as e:
        print(f"junit-summary: {paths[0]}: {e}", file=sys.stderr)
        return 0 if annotate else 1
    if annotate:
        for name, cls, status, message in rows:
            if status in ("failure", "error"):
                print(f"::error title=repro {cell(name)}::{cell(status)}: {cell(message)}")
        return 0
    icon = {"passed": "pass", "failure": "FAIL", "error": "ERROR", "skipped": "skip"}
    counts = {k: sum(1 for r in rows if r[2] == k) for k in icon}
    print(f"### JUnit: {len(rows)} test cases, {counts['failure']} failed, {counts['error']} errors\n")
    print("| test case | result | message |\n|---|---|---|")
    for name, cls, status, message in rows:
        print(f"| {cell(name)} | {icon[status]} | {cell(message)} |")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
