"""The code location's definitions, one folder per capability: checks, references, alerts, upkeep,
devices; each with its assets or sensors, jobs and schedules and a build_defs(settings). Resources
are built once, in resources.py, from the one loaded site configuration."""
