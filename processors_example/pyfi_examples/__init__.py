"""Sample processors for pyfi."""
