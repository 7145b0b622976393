"""Where the work runs: the torch runtime (threads, device, determinism) and the grid of tasks on Dask (one
cluster per run, priorities, the task timeline). Imports no other folder of the package.
"""
