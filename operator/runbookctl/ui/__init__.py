"""`runbookctl ui`: a local web console over the cluster (as the user) or local result files.

Layout: `model` (pure: DAG grouping, layout, Gantt, critical path, ledger badge, safe Markdown),
`source` (what the pages read and write, through the CLI's cluster code), `actions` (the
buttons: one registry that approve/deny and re-run extend), `live` (one shared Kubernetes
watch fanned out to every open page by server-sent events), `app` (Starlette routes).
"""
