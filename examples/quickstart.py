"""Save, list and load the example scenario on the default database.

    python examples/quickstart.py

Uses ~/.healthsim/healthsim.duckdb (or HEALTHSIM_DB). Running it again replaces the
example scenario (overwrite=True), so it is safe to repeat.
"""

from __future__ import annotations

import json
from pathlib import Path

from healthsim.state import list_scenarios, load_scenario, save_scenario

entities = json.loads((Path(__file__).parent / "diabetes-cohort.json").read_text(encoding="utf-8"))

scenario_id = save_scenario(
    "diabetes-cohort",
    entities,
    description="Type 2 diabetes test cohort (HealthSim example)",
    tags=["diabetes", "example"],
    overwrite=True,
)
print(f"saved   diabetes-cohort  {scenario_id}")

listing = list_scenarios(tag="example")
for summary in listing["scenarios"]:
    print(f"listed  {summary['name']}  {summary['entity_count']} entities  {summary['entities_by_type']}")

scenario = load_scenario("diabetes-cohort")
assert scenario["entities"] == entities, "loaded entities differ from the saved ones"
first = scenario["entities"]["patients"][0]
print(f"loaded  {scenario['name']}  first patient {first['patient_id']} {first['name']['family']}")
