"""Tools for whoever works on SARD, not part of the library or the studio: run from the repository
root as `python -m tools.<name>` (screenshot, timing, quality_probe, side_by_side) or
`bash tools/trainer_probes.sh`. Tools may import the studio (app.py); nothing in sard/ or ui/ imports
a tool."""
