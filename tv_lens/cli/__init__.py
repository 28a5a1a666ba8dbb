"""The `tv-lens` command: its parser, the library's commands and the options every command shares; experiments
register further commands through the `tv_lens.commands` entry-point group."""
