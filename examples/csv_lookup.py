#!/usr/bin/env python3
"""A taskyard `command` processor: answers each run from a CSV file.

taskyard writes the run to stdin as one JSON object (`run_id`, `input`,
`task_spec`, `metadata`, `attempt`, `turns`) and takes stdout as the
output. The input is a company name, or an object with a `company` key;
the output is that company's row, with numbers and booleans typed. A
progress line goes to stderr as `{"progress": "..."}`; a missing company
exits 1 with a message on stderr, which becomes the run's error.

The CSV is `companies.csv` beside this script, or the file named by the
`LOOKUP_CSV` environment variable (set it with `env` in the config).
"""
import csv
import json
import os
import sys

run = json.load(sys.stdin)
query = run["input"]
company = query.get("company", "") if isinstance(query, dict) else str(query)
path = os.environ.get("LOOKUP_CSV") or os.path.join(os.path.dirname(__file__), "companies.csv")
print(json.dumps({"progress": f"looking up {company} in {os.path.basename(path)}"}), file=sys.stderr)

with open(path, newline="") as rows:
    for row in csv.DictReader(rows):
        if row["company"].casefold() == company.strip().casefold():
            print(json.dumps({
                "company": row["company"],
                "ceo_name": row["ceo_name"],
                "founded": int(row["founded"]),
                "public": row["public"] == "true",
            }))
            sys.exit(0)
print(f"no row for company {company!r} in {path}", file=sys.stderr)
sys.exit(1)
