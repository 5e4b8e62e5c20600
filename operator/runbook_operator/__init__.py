"""The Kubernetes operator: the second shell around the pure engine.

kopf handlers (`handlers`) stay thin and wake the controller (`execution.controller`); one pure
reconcile step (`execution.reconcile`) turns what is observed (the execution, its Jobs and
results, its ledger) into the engine's next decision and the effects that carry it out;
manifests are built by pure functions (`steps.jobs`, `execution.status`, `ledger.segments`);
`kube` is the only module that talks to the API server. docs/architecture.md draws the loop,
docs/operator.md maps every module.
"""
