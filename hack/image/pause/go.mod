module runbook-operator/hack/image/pause

go 1.24.0
