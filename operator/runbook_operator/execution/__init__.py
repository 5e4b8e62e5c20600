"""The life of one RunbookExecution: fetch, decide, act; pinning, status, control."""
