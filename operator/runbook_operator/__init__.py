"""The Kubernetes operator: the second shell around the pure engine.

kopf handlers (`handlers`) stay thin; one reconcile step (`reconcile`) turns what is observed
(the execution, its Jobs and results, its ledger) into the engine's next decision and the
effects that carry it out; manifests are built by pure functions (`jobs`, `status`, `ledger`);
`kube` is the only module that talks to the API server.
"""
