"""Measure each real-objective suite's relationship on the embedded model and store it once.

    python scripts/measure_suite_relations.py

Fills the ``relationship`` block of suites in benchmarks/suites/ that do not have one yet
(published suites are never edited, so an existing block is left alone).
"""

import json

from morl_core.bench.suites import SUITES_DIR, load_suite, measure_relationship

for path in sorted(SUITES_DIR.glob("*.json")):
    if path.name.startswith("_"):
        continue
    data = json.loads(path.read_text())
    suite = load_suite(path.stem)
    if data.get("relationship") or suite.synthetic:
        continue
    data["relationship"] = measure_relationship(suite.objectives, suite.model, suite.prompt_set)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(path.stem, data["relationship"]["label"], data["relationship"]["coefficient"])
