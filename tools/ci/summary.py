"""Print CI's closing summary from Bazel's test logs.

Counts the test cases in every JUnit XML file Bazel wrote (pytest writes one per
target), so the summary shows the real number of tests, not the number of targets,
and ends with the plain line `N passed, N failed` (N skipped).
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def count(testlogs: Path) -> tuple[int, int, int, int]:
    """(passed, failed, skipped, targets) over every test.xml below testlogs."""
    passed = failed = skipped = targets = 0
    for xml in sorted(testlogs.rglob("test.xml")):
        targets += 1
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError:
            failed += 1  # a target that crashed before writing its XML
            continue
        for case in root.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
            elif case.find("skipped") is not None:
                skipped += 1
            else:
                passed += 1
    return passed, failed, skipped, targets


def main(argv: list[str]) -> int:
    testlogs = Path(argv[1]) if len(argv) > 1 else Path(".bazel/testlogs")
    if not testlogs.exists():
        print("summary: no test logs (the build failed before any test ran)")
        print("0 passed, 1 failed")
        return 0
    passed, failed, skipped, targets = count(testlogs.resolve())
    print(f"summary: {targets} test targets, {passed + failed + skipped} test cases")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
