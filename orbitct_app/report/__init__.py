"""What a run reports: per-exam records, the top-level tables and the report page."""
