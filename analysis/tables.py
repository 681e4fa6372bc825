"""Our numbers next to the paper's: Fig. 2, Tables 1-3 and Sec. 5.2, for the studies run.

    python analysis/tables.py [RESULTS_ROOT] [--format markdown|latex|csv]

The paper's numbers are the study files' ``paper:`` annotations (from
docs/paper-recipes.md, Reported numbers). Ours are each run's final kNN top-1 (a monitor, not the
paper's linear probe: compare trends, not values), std of z/|z| x sqrt(d) (1 when
uniformly spread, 0 when collapsed), mean over seeds, and the run verdict over seeds with
its onset and whether it agrees with the paper's outcome.
"""

import argparse
from pathlib import Path

from siamlab.results.compare import compare, load_studies
from siamlab.results.paper import paper_annotations

SECTIONS = {
    "stopgrad": "Fig. 2: stop-gradient",
    "predictor": "Table 1: the predictor",
    "batch_size": "Table 2: batch size",
    "batchnorm": "Table 3: BN in the heads",
    "em_hypothesis": "Sec. 5.2: EM-like alternation",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=Path("results"))
    parser.add_argument("--format", default="markdown", choices=["markdown", "latex", "csv"])
    args = parser.parse_args()
    found = {p.name: p for p in args.root.iterdir() if p.name in SECTIONS}
    if not found:
        raise SystemExit(f"none of the studies {', '.join(SECTIONS)} under {args.root}")
    for name, title in SECTIONS.items():
        if name not in found:
            print(f"## {title}: not run (siamlab run studies/{name}.yaml)\n")
            continue
        studies = load_studies([found[name]])
        paper, _ = paper_annotations(studies)
        metrics = [
            m for m in ("knn_top1", "z_std_eval*sqrt(d)") if m.split("*")[0] in studies[name]
        ]
        table = compare(studies, metrics=metrics, paper=paper)  # agrees: verdict vs outcome
        print(f"## {title} ({found[name]})\n")
        print(table.format(args.format))


if __name__ == "__main__":
    main()
