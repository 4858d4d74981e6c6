"""The agent: makes the meta-model real on one host (deploy, supervise, report)."""
