"""Reporting: run dirs -> tables and plots. Reads only the run-dir contract, never live objects."""
