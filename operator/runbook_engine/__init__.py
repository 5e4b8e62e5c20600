"""Pure runbook engine: model, validation, scheduler and audit chain.

Nothing in this package talks to Kubernetes, the network or the disk: the local runner
(`runbookctl`) and the operator are the imperative shells around it.
"""
