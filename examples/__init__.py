"""Worked examples of extending trainlab, one per recipe of docs/EXTENDING.md (each tested)."""
