"""Launchers: a study's runs as Slurm array tasks or local jobs, through submitit."""
