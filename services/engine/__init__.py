"""The engine: starts, waits for, inspects and stops declared services; knows none by name."""
