"""Benchmarks that reproduce published figures with vmcu's own plans, generated C and emulated runs."""
