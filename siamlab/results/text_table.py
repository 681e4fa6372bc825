"""A table of text cells as markdown, LaTeX (booktabs) or tab-separated text, notes below."""

import csv
import io
from collections.abc import Sequence


def render(
    head: Sequence[str], rows: Sequence[Sequence[str]], notes: Sequence[str], fmt: str
) -> str:
    """``head`` and ``rows`` in ``fmt``, then one ``note:`` line (``%`` in LaTeX) per note.

    Raises:
        ValueError: an unknown format.
    """
    if fmt == "markdown":
        lines = ["| " + " | ".join(h.replace("|", "\\|") for h in head) + " |"]
        lines.append("|" + "---|" * len(head))
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    elif fmt == "latex":
        esc = [[_tex(c) for c in r] for r in [head, *rows]]
        lines = [r"\begin{tabular}{" + "l" * len(head) + "}", r"\toprule"]
        lines += [" & ".join(esc[0]) + r" \\", r"\midrule"]
        lines += [" & ".join(r) + r" \\" for r in esc[1:]]
        lines += [r"\bottomrule", r"\end{tabular}"]
    elif fmt == "table":
        buf = io.StringIO()
        csv.writer(buf, delimiter="\t", lineterminator="\n").writerows([head, *rows])
        lines = [buf.getvalue().rstrip("\n")]
    else:
        raise ValueError(f"format must be table, csv, markdown or latex, not {fmt!r}")
    notes = [f"% {n}" if fmt == "latex" else f"note: {n}" for n in notes]
    return "\n".join([*lines, *notes]) + "\n"


_TEX = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$"}
_TEX |= {"~": r"\textasciitilde{}", "‖": r"$\|$", "·√d": r"$\cdot\sqrt{d}$", "α": r"$\alpha$"}


def _tex(text: str) -> str:
    for a, b in _TEX.items():  # backslash first: the others insert backslashes
        text = text.replace(a, b)
    return text.replace("±", r"$\pm$").replace("->", r"$\to$")
