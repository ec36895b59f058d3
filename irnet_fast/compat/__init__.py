"""Drop-in modules with the reference implementation's names."""
