"""Text from files and other programs (results files, job logs, a worker's stderr) is data: made safe
here for a terminal, one definition for every stage that prints it."""

import re

_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]?|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[PX^_][^\x1b]*(?:\x1b\\)?|.?)",
                     re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_text(text: object, lines: bool = False) -> str:
    """Untrusted text (from a results file, a job's log, another program's stderr) safe for a terminal:
    no escape sequence (clearing the screen, hyperlinks, window titles), no control character that
    moves the cursor, no bidi override.  One line unless `lines` (then newlines and tabs stay)."""
    clean = _CONTROL.sub("", _ESCAPE.sub("", str(text)))
    return clean if lines else " ".join(clean.split())
