"""Measurements the way the paper (and the model card) report them; each is a subcommand of
python -m sard.evaluate."""
