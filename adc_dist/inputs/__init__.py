"""What a user hands the commands: files (``files``: regular files only, bounded safe YAML,
one-line messages of bounded length) and paths (``paths``: made absolute against the user's
working directory at the entry points, before Ray starts). Imports only ``adc_dist.errors``.
"""
