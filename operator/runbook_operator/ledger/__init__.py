"""The execution's audit ledger on the cluster: segments, the writer (store), checkpoints,
finding (find) and verifying (verify)."""
