"""Scripted figures from the analyses' results files (`tv-lens figures RUN_DIR`); installed as
`tv_lens_figures`."""
