"""One client of the team group's "8 clients" row (run by ``run.py --only team``).

    python benchmarks/team_client.py URL PREFIX COUNT SIZE

Saves COUNT scenarios of SIZE generated entities, named PREFIX-000, PREFIX-001…, into the
team store at URL, one ``ScenarioStore(URL).save_scenario`` after the other, then exits.
The parent times from starting the clients to the last one's exit.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from data import generate
from healthsim.state import ScenarioStore


def main() -> None:
    url, prefix, count, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = ScenarioStore(url)
    entities = generate(size)
    for i in range(count):
        store.save_scenario(f"{prefix}-{i:03d}", entities)


if __name__ == "__main__":
    main()
