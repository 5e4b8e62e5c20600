"""A step in an image of your own: read what the operator mounts, answer in the termination log.

The contract (docs/operator.md, "The result contract"): the pinned definition and request are in
/var/run/runbook/definition, upstream results in /var/run/runbook/upstream/<step>.json.gz, the
step's id in RUNBOOK_STEP_ID. Write a StepExecutorResult as JSON (≤ 4 KiB) to
/dev/termination-log; exit 0. Nothing here needs the project's packages: any language works.
"""

import gzip
import json
import os
from pathlib import Path

MOUNT = Path("/var/run/runbook")


def upstream_outputs() -> dict:
    out = {}
    for path in sorted((MOUNT / "upstream").glob("*.json.gz")):
        out[path.name.removesuffix(".json.gz")] = json.loads(gzip.decompress(path.read_bytes()))["output"]
    return out


def main() -> None:
    request = json.loads((MOUNT / "definition" / "request.json").read_text())
    words = str(request.get("input", {}).get("text", "")).split()
    result = {
        "success": True,
        "output": {"wordCount": len(words), "upstream": sorted(upstream_outputs())},
        "kpis": {"wordCount": len(words)},
    }
    Path("/dev/termination-log").write_text(json.dumps(result))
    print(f"step {os.environ['RUNBOOK_STEP_ID']}: {len(words)} words")


if __name__ == "__main__":
    main()
