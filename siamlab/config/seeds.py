"""``--seeds``: a study's seeds from the command line (``0,1,2``, ``0-2`` or ``0-2,7``).

The seeds replace the study file's ``seeds`` (one run per variant and seed), so a
difference between variants can be set against the spread over seeds.
"""

import re
from collections import Counter

from siamlab.errors import ConfigError

_ITEM = re.compile(r"^(\d+)(?:-(\d+))?$")  # N or N-M, digits only (no sign)
MAX_SEED = 2**32 - 1  # numpy's legacy and most other seeds are 32-bit
MAX_RUNS = 10_000  # seeds in one --seeds: more is a typo, not a study


def parse_seeds(text: str) -> list[int]:
    """Seeds from a comma-separated list of integers >= 0 and inclusive ranges ``A-B``.

    Args:
        text: e.g. ``"0,1,2"``, ``"0-2"`` or ``"0-2,7"``.

    Returns:
        The seeds in the order given, e.g. ``[0, 1, 2, 7]``.

    Raises:
        ConfigError: an empty list or item, a negative or non-integer seed, one above
            MAX_SEED, a range whose end is below its start, more than MAX_RUNS seeds, or
            a seed given twice.
    """
    usage = "use integers >= 0 and ranges, e.g. --seeds 0,1,2 or --seeds 0-2"
    items = [item.strip() for item in text.split(",")]
    if not text.strip():
        raise ConfigError(f"--seeds is empty; {usage}")
    if not all(items):
        raise ConfigError(f"--seeds {text!r} has an empty item; {usage}")
    seeds: list[int] = []
    for item in items:
        match = _ITEM.match(item)
        if match is None:
            what = "a negative seed" if item.startswith("-") else "not an integer or range"
            raise ConfigError(f"--seeds: {item!r} is {what}; {usage}")
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) is not None else start
        if end < start:
            raise ConfigError(
                f"--seeds: the range {item!r} ends below its start; write {end}-{start}"
            )
        if end > MAX_SEED:
            raise ConfigError(f"--seeds: {end} is above the largest seed, {MAX_SEED}; {usage}")
        if len(seeds) + end - start + 1 > MAX_RUNS:
            raise ConfigError(f"--seeds {text!r} asks for more than {MAX_RUNS:,} seeds")
        seeds += range(start, end + 1)
    twice = sorted(seed for seed, n in Counter(seeds).items() if n > 1)
    if twice:
        raise ConfigError(f"--seeds {text!r} gives seed(s) {twice} more than once")
    return seeds
