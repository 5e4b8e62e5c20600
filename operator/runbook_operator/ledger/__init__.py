"""The execution's audit ledger on the cluster: segments, the store, checkpoints, verify."""
