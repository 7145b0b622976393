"""The torch runtime of both studies: thread counts, determinism and the device, set up in one place.

Conventions
-----------
- Threads: a task runs torch with :func:`task_threads` threads: ``$HONEST_TORCH_THREADS`` when set (a cluster
  worker, see ``helpers.compute.cluster``), else the cores this process may use (:func:`available_cores`). The same seed
  on the same machine with the same thread count gives identical weights and predictions.
- :func:`torch_settings` sets the intra-op thread count and deterministic algorithms for a block and restores the
  previous values after it (``num_threads`` None: :func:`task_threads`; ``deterministic`` None: leave torch's mode
  as it is). On CUDA, deterministic mode also fixes cuDNN's algorithms and cuBLAS's workspace.
- Device: :func:`default_device` is ``"cuda"`` when torch sees a GPU, else ``"cpu"``; :func:`check_device`
  validates a user's device name once, at the entry points.
- ``OMP_WAIT_POLICY=PASSIVE`` is set (unless the user set it) when this module is imported, which every module
  that imports torch does first: OpenMP threads that spin while waiting make torch 10-70x slower when the cores
  are shared with other processes (measured on 2 shared cores); passive waiting costs little when they are not.
  It is only effective before torch's first import.

torch is imported inside the functions on purpose: the runner and the cluster ask for thread counts without
loading torch (about two seconds and a few hundred MB).
"""

from __future__ import annotations

import contextlib
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: glibc's allocator settings of the processes that do the study's work, the notebook kernels and the cluster's
#: workers (:func:`allocator_environment`): freed memory stays in the process for reuse (trim threshold 1 GiB), a
#: block up to 32 MiB comes from the heap rather than from its own mapping (a fixed threshold; glibc's adaptive one
#: starts at 128 KiB), and the heap grows by 256 MiB at a time. Without them glibc hands the per-step buffers of
#: torch and numpy back to the system and faults their pages in again at the next use. Measured on the 2-core
#: machine: a Residual U-Net's 80 training steps and 2 validations (``wmh``, one thread) 13.6 s -> 13.1 s and
#: 241k -> 45k page faults; the ``failure_modes`` section 27.5 s -> 25.3 s. glibc reads them when a process starts
#: (other C libraries ignore them); a value set in the environment is kept.
ALLOCATOR_ENV = {"MALLOC_TRIM_THRESHOLD_": "1073741824", "MALLOC_MMAP_THRESHOLD_": "33554432",
                 "MALLOC_TOP_PAD_": "268435456"}

#: Environment variable a cluster worker reads for its torch thread count.
THREADS_ENV = "HONEST_TORCH_THREADS"


def allocator_environment() -> dict[str, str]:
    """:data:`ALLOCATOR_ENV`, with any of its variables already set in this process's environment kept as set."""
    return {name: os.environ.get(name, value) for name, value in ALLOCATOR_ENV.items()}


def available_cores() -> int:
    """The cores this process may use (``os.sched_getaffinity`` where available, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def task_threads() -> int:
    """Torch threads for a task in this process: ``$HONEST_TORCH_THREADS`` when set (a cluster worker), else the
    cores available."""
    value = os.environ.get(THREADS_ENV)
    if value is None:
        return available_cores()
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"${THREADS_ENV} must be a positive integer, got {value!r}")
    return threads


def cuda_available() -> bool:
    """Whether torch is installed and sees a GPU."""
    try:
        import torch  # lazy: see the module docstring
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def default_device() -> str:
    """``"cuda"`` when torch sees a GPU, else ``"cpu"``."""
    return "cuda" if cuda_available() else "cpu"


def check_device(device):
    """``device`` as a ``torch.device``; a ``ValueError`` naming the value when torch does not know it."""
    import torch  # lazy: see the module docstring

    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be a torch device name such as 'cpu' or 'cuda', got {device!r}") from None


@contextlib.contextmanager
def torch_settings(*, num_threads: int | None = None, deterministic: bool | None = True):
    """Run a block with ``num_threads`` torch intra-op threads (None: :func:`task_threads`) and, unless
    ``deterministic`` is None, deterministic algorithms switched on or off; restore the previous values after it.

    Yields the thread count in use."""
    import torch  # lazy: see the module docstring

    threads = task_threads() if num_threads is None else int(num_threads)
    if threads < 1:
        raise ValueError(f"num_threads must be a positive integer, got {num_threads!r}")
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.set_num_threads(threads)
    if deterministic is not None:
        if torch.cuda.is_available():
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = deterministic, not deterministic
        torch.use_deterministic_algorithms(deterministic)
    try:
        yield threads
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old_cudnn


__all__ = [
    "ALLOCATOR_ENV", "allocator_environment", "THREADS_ENV", "available_cores", "task_threads", "cuda_available",
    "default_device", "check_device", "torch_settings",
]
