"""Nobody else's code runs on our cluster (helpers.compute.security): a local cluster listens on loopback only, a
tls:// scheduler admits only the run's credentials, credential files are private and short-lived, nothing secret is
written, and plain tcp:// to another host is named as a risk. Real processes on 127.0.0.1 throughout."""

from __future__ import annotations

import gc
import io
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import yaml

from helpers.compute import cluster, security

ROOT = Path(__file__).resolve().parents[1]


def _listening(process: psutil.Process) -> list[str]:
    found = []
    for p in [process, *process.children(recursive=True)]:
        try:
            found += [f"{c.laddr.ip}:{c.laddr.port}" for c in p.net_connections(kind="inet")
                      if c.status == psutil.CONN_LISTEN]
        except psutil.NoSuchProcess:
            continue
    return found


def _square(x):
    return x * x


@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_every_socket_of_a_local_cluster_listens_on_loopback():
    # scheduler and dashboard in this process, a nanny and a worker in each child process
    me = psutil.Process()
    before = set(_listening(me))
    with cluster.open_cluster("local", workers=2, out=io.StringIO()) as info:
        sockets = sorted(set(_listening(me)) - before)
        assert info.dashboard.startswith("http://127.0.0.1:")
    assert len(sockets) >= 6, sockets  # scheduler, dashboard, 2 x (nanny, worker)
    assert all(s.startswith("127.0.0.1:") for s in sockets), sockets
    gc.collect()


def test_listening_sockets_are_found_so_the_loopback_test_can_fail():
    import socket

    with socket.socket() as open_socket:
        open_socket.bind(("0.0.0.0", 0))
        open_socket.listen()
        assert any(s.startswith("0.0.0.0:") for s in _listening(psutil.Process()))


def test_run_credentials_are_private_files_in_a_private_folder_removed_after_use(tmp_path):
    with security.run_credentials(tmp_path) as credentials:
        folder = credentials.folder
        assert folder.parent == tmp_path and stat.S_IMODE(folder.stat().st_mode) == 0o700
        files = sorted(p.name for p in folder.iterdir())
        assert files == ["ca.pem", "cert.pem", "key.pem", "security.yaml"]
        assert all(stat.S_IMODE((folder / f).stat().st_mode) == 0o600 for f in files)
        assert "PRIVATE KEY" in credentials.key_file.read_text()
        config = yaml.safe_load(credentials.security_file.read_text())
        assert config["distributed"]["comm"]["tls"]["client"]["key"] == str(credentials.key_file)
        assert "BEGIN" not in credentials.security_file.read_text()  # the file names the credentials
    assert not folder.exists()


def test_a_security_file_is_checked_and_names_the_problem(tmp_path):
    with pytest.raises(security.SecurityError, match="security file '.*nope.yaml' does not exist"):
        security.load_security(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"distributed": {"scheduler": {"allowed-failures": 3}}}))
    with pytest.raises(security.SecurityError, match="must hold only the keys distributed.comm"):
        security.load_security(bad)
    with security.run_credentials(tmp_path) as credentials:
        loaded = security.load_security(credentials.security_file)
        assert loaded.require_encryption and loaded.tls_client_key == str(credentials.key_file)
        credentials.key_file.chmod(0o644)
        with pytest.raises(security.SecurityError, match=r"the key .*key.pem' is readable by others \(mode 0644\)"):
            security.load_security(credentials.security_file)


def test_plain_tcp_to_another_host_is_named_as_a_risk_and_tls_needs_credentials():
    out = io.StringIO()
    security.check_address("tcp://10.1.2.3:8786", None, out=out)
    assert "warning: the Dask scheduler at tcp://10.1.2.3:8786 is reached over plain tcp://" in out.getvalue()
    assert "anyone who can reach 10.1.2.3:8786 can run code there" in out.getvalue()
    quiet = io.StringIO()
    for address in ("tcp://127.0.0.1:8786", "127.0.0.1:8786", "tcp://localhost:8786", "tls://10.1.2.3:8786"):
        security.check_address(address, object(), out=quiet)
    assert quiet.getvalue() == ""
    with pytest.raises(security.SecurityError, match="speaks TLS: give the run's credentials with --security PATH"):
        security.check_address("tls://10.1.2.3:8786", None)
    assert security.is_loopback("127.0.0.2") and security.is_loopback("::1") and not security.is_loopback("10.0.0.1")


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    """A LocalCluster on 127.0.0.1 speaking tls:// with a run's temporary credentials (one worker process)."""
    from distributed import LocalCluster

    credentials = security.RunCredentials(tmp_path_factory.mktemp("credentials"))
    local = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", protocol="tls://",
                         security=credentials.security, dashboard_address="127.0.0.1:0",
                         env=cluster.worker_environment(1))
    try:
        yield local, credentials
    finally:
        local.close()
        credentials.close()
        gc.collect()


@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_tls_scheduler_runs_a_grid_with_the_credentials_and_refuses_a_client_without(tls_cluster, tmp_path):
    local, credentials = tls_cluster
    address = local.scheduler_address
    assert address.startswith("tls://127.0.0.1:")
    tasks = [cluster.GridTask(f"t{i}", _square, (i,)) for i in range(4)]
    assert cluster.run_grid(tasks, scheduler=address, security=credentials.file_security, progress=False) == [
        0, 1, 4, 9]
    # without credentials: refused before connecting, by our check ...
    with pytest.raises(security.SecurityError, match="speaks TLS"):
        cluster.run_grid(tasks, scheduler=address, progress=False)
    # ... and by the scheduler itself: a client with no or other credentials cannot connect, no task runs
    marker = tmp_path / "ran"
    code = (
        "import sys\nfrom distributed import Client\n"
        f"sec = {'None' if True else ''}\n"
        "try:\n"
        f"    c = Client({address!r}, timeout='3s')\n"
        f"    c.submit(open, {str(marker)!r}, 'w').result()\n"
        "except Exception as err:\n"
        "    print('refused:', type(err).__name__)\n    sys.exit(3)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stdout + result.stderr
    assert not marker.exists()
    with security.run_credentials(tmp_path) as other:  # another run's credentials are not this run's
        code_other = code.replace("timeout='3s'", f"timeout='3s', security=__import__('helpers.compute.security', "
                                                  f"fromlist=['x']).load_security({str(other.security_file)!r})")
        result = subprocess.run([sys.executable, "-c", code_other], capture_output=True, text=True, timeout=120)
        assert result.returncode == 3, result.stdout + result.stderr
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_the_runner_runs_sections_through_a_tls_scheduler_and_writes_no_credential(tls_cluster, tmp_path,
                                                                                   monkeypatch):
    """The runner's --scheduler tls://... --security PATH: the training notebook's grid reaches the TLS scheduler
    with the credentials named by the path; nothing in the workspace holds a credential."""
    from test_cluster import _tiny_project

    from helpers.runner import cli

    local, credentials = tls_cluster
    _tiny_project(tmp_path, (
        "from helpers.base import io\nfrom helpers.compute import cluster\nfrom helpers.base.paths import Workspace\n"
        "rows = cluster.run_grid([cluster.GridTask(f'{dataset} · pow', pow, (3, 2))], scheduler=scheduler, "
        "name=f'pow {dataset}')\n"
        "io.write_text(Workspace.at(workspace).results(dataset) / 'training.txt', f'{rows[0]} {scheduler}')\n"),
        datasets=("wmh",))
    monkeypatch.setenv("HONEST_PROJECT_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    rc = cli.main(["run", "--profile", "t", "--workspace", "ws", "--no-book", "--scheduler",
                   local.scheduler_address, "--security", str(credentials.security_file)])
    assert rc == 0
    assert (tmp_path / "ws" / "results" / "wmh" / "training.txt").read_text() == f"9 {local.scheduler_address}"
    secrets = [credentials.key_file.read_text(), credentials.cert_file.read_text(), credentials.ca_file.read_text()]
    needles = {line for text in secrets for line in text.splitlines() if len(line) > 40}
    written = [p for p in (tmp_path / "ws").rglob("*") if p.is_file()]
    assert written
    leaked = [str(p) for p in written if any(n in p.read_text(errors="ignore") for n in needles)
              or "PRIVATE KEY" in p.read_text(errors="ignore")]
    assert not leaked, leaked
    gc.collect()


def test_slurm_recipe_dry_run_uses_tls_and_prints_no_credential(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("slurm_paper", ROOT / "examples" / "slurm_paper.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    base = tmp_path / "shared"
    assert recipe.main(["--dry-run", "--queue", "gpu", "--credentials-dir", str(base),
                        "--python", "/shared/env/bin/python"]) == 0
    printed = capsys.readouterr().out
    command = [line for line in printed.splitlines() if "dask_worker" in line][0]
    assert " tls://" in command and "--tls-ca-file" in command and "--tls-key" in command
    assert "BEGIN" not in printed and "PRIVATE" not in printed
    folder = Path(command.split("--tls-ca-file ")[1].split()[0]).parent
    assert folder.parent == base and not folder.exists()  # removed when the cluster closed
    assert list(base.iterdir()) == []
    gc.collect()
