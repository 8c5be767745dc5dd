"""Port sockjs-protocol.py (Python 2) to Python 3 with lib2to3's standard
fixers: print, unicode literals, unichr, long, lambda (x): ... and friends.
Nothing else is changed.

usage: python3 port.py SRC DST
"""
import sys
import warnings

warnings.simplefilter("ignore", DeprecationWarning, append=False)
warnings.simplefilter("ignore", PendingDeprecationWarning, append=False)

from lib2to3 import refactor  # noqa: E402


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding="utf-8") as f:
        text = f.read()
    if not text.endswith("\n"):
        text += "\n"
    fixers = refactor.get_fixers_from_package("lib2to3.fixes")
    tool = refactor.RefactoringTool(fixers)
    tree = tool.refactor_string(text, src)
    with open(dst, "w", encoding="utf-8") as f:
        f.write(str(tree))


if __name__ == "__main__":
    main()
