"""New Era driver, codec, simulator wiring and CLI tests."""
