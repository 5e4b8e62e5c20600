"""RunbookTrigger: runbooks that start themselves (Alertmanager webhooks, schedules)."""
