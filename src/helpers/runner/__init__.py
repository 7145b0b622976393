"""The runner: the notebook context and the study's command line (sections, the plan, execution with
papermill, the workspace lock, the book, ``evaluate``). Only notebooks and the entry point import it;
nothing in the package below imports it.
"""
