"""Scripted figures from the analyses' results files (`python -m figures.make RUN_DIR`)."""
