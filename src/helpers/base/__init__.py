"""Foundation: no study concept. Paths and workspaces, atomic file writing, progress bars, provenance, the
argument validators and the figure style. Any layer may import it; it imports no other folder.
"""
