"""`runbookctl`: run, validate, verify and draw runbooks on one machine, no cluster needed."""
