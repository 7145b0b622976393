import pytest
import torch

from helpers.compute import runtime


def test_torch_settings_restore_previous_state():
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    with runtime.torch_settings(num_threads=1) as threads:
        assert threads == 1 and torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before
    with pytest.raises(ValueError, match="num_threads must be a positive integer"):
        with runtime.torch_settings(num_threads=0):
            pass


def test_torch_settings_without_deterministic_leaves_the_mode_alone():
    before = torch.are_deterministic_algorithms_enabled()
    with runtime.torch_settings(num_threads=1, deterministic=None):
        assert torch.are_deterministic_algorithms_enabled() == before


def test_task_threads_reads_the_worker_environment(monkeypatch):
    monkeypatch.setenv(runtime.THREADS_ENV, "3")
    assert runtime.task_threads() == 3
    monkeypatch.setenv(runtime.THREADS_ENV, "zero")
    with pytest.raises(ValueError, match=r"\$HONEST_TORCH_THREADS must be a positive integer, got 'zero'"):
        runtime.task_threads()


def test_task_threads_without_the_environment_is_the_cores_available(monkeypatch):
    monkeypatch.delenv(runtime.THREADS_ENV, raising=False)
    assert runtime.task_threads() == runtime.available_cores() >= 1


def test_check_device_names_the_bad_value():
    assert runtime.check_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be a torch device name such as 'cpu' or 'cuda', got 'gpu0'"):
        runtime.check_device("gpu0")


def test_default_device_follows_cuda_availability():
    assert runtime.default_device() == ("cuda" if torch.cuda.is_available() else "cpu")
