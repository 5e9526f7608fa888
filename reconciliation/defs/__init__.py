"""The Dagster edge: assets, checks, resources, jobs, schedules. Logic lives elsewhere."""
