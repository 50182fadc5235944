"""Dose plans: files, drug library, validation, compilation to rate programs, courses."""
