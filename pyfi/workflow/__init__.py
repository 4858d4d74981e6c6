"""Compositions (pipeline, parallel, funnel) that travel with their messages and run on workers."""
