"""The network as declared: decorators, YAML files, the object API, and its validation."""
