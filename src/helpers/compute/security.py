"""Who may run code on the study's cluster: loopback on one machine, TLS with per-run credentials on a shared one.

A Dask scheduler runs whatever functions its clients send, as the user who started it, with that user's access to
the workspace (data, checkpoints, results). So:

- **One machine**: a local cluster binds every socket (scheduler, workers, nannies, dashboard) to 127.0.0.1
  (:mod:`helpers.compute.cluster`); its dashboard is reached from elsewhere through an SSH tunnel
  (``ssh -L 8787:127.0.0.1:<port> host``), never by opening it.
- **A shared cluster**: the scheduler speaks ``tls://`` and admits only clients and workers holding the run's
  credentials: a CA certificate and a certificate with its key, made for the run (:class:`RunCredentials`, from
  ``distributed.security.Security.temporary()``), written as PEM files of mode 0600 into a folder of mode 0700 on
  the shared file system, and removed with it when the run ends. Workers read them as files (dask-jobqueue's
  ``--tls-*`` arguments), clients through a *security file*.
- **The security file** (``--security PATH`` on the command line; :func:`load_security`) is a small YAML file in
  Dask's own configuration vocabulary, the keys of ``distributed.comm.tls``::

      distributed:
        comm:
          require-encryption: true
          tls:
            ca-file: /shared/run-credentials/ca.pem
            client:
              cert: /shared/run-credentials/cert.pem
              key: /shared/run-credentials/key.pem

  The same keys set in the Dask configuration (``~/.config/dask/*.yaml`` or ``DASK_DISTRIBUTED__COMM__TLS__...``
  variables) work without the file. The runner hands the file's *path* to its notebooks' kernels
  (:data:`SECURITY_ENV`), never its contents; no stamp, banner, log or page holds a credential.
- **Plain tcp:// to another host**: allowed (a private cluster network may be trusted), but :func:`check_address`
  prints a warning that names the risk: anyone who can reach that port can run code as you.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import socket
import stat
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import yaml

__all__ = [
    "SECURITY_ENV", "TLS_KEYS", "SecurityError", "load_security", "security_from_environment", "is_loopback",
    "check_address", "RunCredentials", "run_credentials",
]

#: Environment variable through which the runner tells its notebooks' kernels where the security file is.
SECURITY_ENV = "HONEST_DASK_SECURITY"
#: The Dask configuration keys a security file may set, below ``distributed.comm``.
TLS_KEYS = ("require-encryption", "tls.ca-file", "tls.client.cert", "tls.client.key", "tls.ciphers",
            "tls.min-version", "tls.max-version")


class SecurityError(ValueError):
    """A security file or address that cannot be used; the message names the file or address and the problem."""


def _flatten(mapping: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in mapping.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(_flatten(value, name))
        else:
            out[name] = value
    return out


def _private_file(path: Path, what: str, source: str) -> None:
    if not path.is_file():
        raise SecurityError(f"{source}: {what} {str(path)!r} does not exist")
    if what == "key" and stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise SecurityError(f"{source}: the key {str(path)!r} is readable by others (mode "
                            f"{stat.S_IMODE(path.stat().st_mode):04o}); chmod 600 it")


def load_security(path):
    """A ``distributed.Security`` from the security file at ``path`` (see the module docstring). Errors name the
    file: missing, not YAML, keys outside ``distributed.comm`` TLS settings, a credential file that is missing, or a
    key file that others can read. Relative credential paths resolve against the file's folder."""
    from distributed.security import Security  # lazy: distributed loads only when a cluster is used

    source = str(path)
    file = Path(path).expanduser()
    if not file.is_file():
        raise SecurityError(f"security file {source!r} does not exist")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise SecurityError(f"security file {source!r} is not valid YAML: {err}") from None
    flat = _flatten(data) if isinstance(data, dict) else None
    prefix = "distributed.comm."
    if not flat or any(not k.startswith(prefix) or k[len(prefix):] not in TLS_KEYS for k in flat):
        raise SecurityError(f"security file {source!r} must hold only the keys distributed.comm."
                            f"{{{', '.join(TLS_KEYS)}}}, got {sorted(flat or [])}")
    settings = {k[len(prefix):]: v for k, v in flat.items()}
    missing = [k for k in ("tls.ca-file", "tls.client.cert", "tls.client.key") if not settings.get(k)]
    if missing:
        raise SecurityError(f"security file {source!r} lacks distributed.comm.{', distributed.comm.'.join(missing)}")
    files = {}
    for key, what in (("tls.ca-file", "CA certificate"), ("tls.client.cert", "certificate"),
                      ("tls.client.key", "key")):
        p = Path(str(settings[key])).expanduser()
        p = p if p.is_absolute() else file.parent / p
        _private_file(p, what, source)
        files[key] = str(p)
    return Security(tls_ca_file=files["tls.ca-file"], tls_client_cert=files["tls.client.cert"],
                    tls_client_key=files["tls.client.key"],
                    require_encryption=bool(settings.get("require-encryption", True)),
                    tls_ciphers=settings.get("tls.ciphers"), tls_min_version=settings.get("tls.min-version"),
                    tls_max_version=settings.get("tls.max-version"))


def security_from_environment():
    """The credentials of this process: the security file named by :data:`SECURITY_ENV` (set by the runner for its
    notebooks), else those in the Dask configuration (``distributed.comm.tls.ca-file`` set), else None."""
    path = os.environ.get(SECURITY_ENV)
    if path:
        return load_security(path)
    import dask

    if dask.config.get("distributed.comm.tls.ca-file", None):
        from distributed.security import Security

        return Security()
    return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback: 127.0.0.0/8, ::1 or a name resolving
    only to those."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def check_address(address: str, security, *, out=sys.stderr) -> None:
    """Check a scheduler address before connecting: ``tls://`` needs credentials (``security``), else a
    :class:`SecurityError` says how to give them; plain ``tcp://`` (or no protocol) to a host that is not this
    machine's loopback prints a warning naming the risk, and connects."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme == "tls":
        if security is None:
            raise SecurityError(f"scheduler {address!r} speaks TLS: give the run's credentials with --security PATH "
                                f"(a security file, see helpers.compute.security) or set distributed.comm.tls.* in "
                                f"the Dask configuration")
        return
    host = parts.hostname or ""
    if parts.scheme in ("tcp", "") and host and not is_loopback(host):
        print(f"warning: the Dask scheduler at {address} is reached over plain tcp:// without credentials: anyone who "
              f"can reach {host}:{parts.port} can run code there as the user who started it, with access to the "
              f"workspace. Use a tls:// scheduler with per-run credentials (examples/slurm_paper.py) unless the "
              f"network is yours alone.", file=out, flush=True)


class RunCredentials:
    """One run's TLS credentials as files: ``ca.pem``, ``cert.pem``, ``key.pem`` (mode 0600) and the security file
    ``security.yaml`` naming them, in a fresh folder of mode 0700 below ``base`` (a shared file system when workers
    run elsewhere). ``security`` is the in-memory ``distributed.Security`` they were written from (by default a new
    ``Security.temporary()``: one self-signed CA and certificate for the run); ``file_security`` the same
    credentials read back from the files. :meth:`close` (or leaving the ``with`` block) removes the folder."""

    def __init__(self, base=None, *, security=None):
        from distributed.security import Security

        self.security = Security.temporary() if security is None else security
        base = Path(tempfile.gettempdir() if base is None else base).expanduser()
        base.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="honest-credentials-", dir=base))  # mode 0700
        os.chmod(self.folder, 0o700)
        try:
            self.ca_file = self._write("ca.pem", self.security.tls_ca_file)
            self.cert_file = self._write("cert.pem", self.security.tls_client_cert)
            self.key_file = self._write("key.pem", self.security.tls_client_key)
            config = {"distributed": {"comm": {"require-encryption": True, "tls": {
                "ca-file": str(self.ca_file), "client": {"cert": str(self.cert_file), "key": str(self.key_file)}}}}}
            self.security_file = self._write("security.yaml", yaml.safe_dump(config, sort_keys=False))
        except BaseException:
            self.close()
            raise
        self.file_security = load_security(self.security_file)

    def _write(self, name: str, text: str) -> Path:
        if not text or not isinstance(text, str):
            raise SecurityError(f"no credential to write as {name}")
        path = self.folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def worker_security(self):
        """A ``distributed.Security`` whose worker and scheduler credentials are the files (what dask-jobqueue puts
        on the workers' command lines as ``--tls-*`` paths, and the scheduler on the login node uses)."""
        from distributed.security import Security

        return Security(tls_ca_file=str(self.ca_file), tls_client_cert=str(self.cert_file),
                        tls_client_key=str(self.key_file), tls_worker_cert=str(self.cert_file),
                        tls_worker_key=str(self.key_file), tls_scheduler_cert=str(self.cert_file),
                        tls_scheduler_key=str(self.key_file), require_encryption=True)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "RunCredentials":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def run_credentials(base=None, *, security=None):
    """:class:`RunCredentials` for a ``with`` block: the folder exists inside it and is gone after it."""
    credentials = RunCredentials(base, security=security)
    try:
        yield credentials
    finally:
        credentials.close()
