"""One step attempt on the cluster: its Job, the step pod, how it ended, its result."""
