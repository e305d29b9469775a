"""Building Grafana for the local stack from its Go module (``slotstream stack build-grafana``).

No Debian, PyPI or npm package ships the Grafana server, so the local stack builds it:
``go mod download -json github.com/grafana/grafana@<commit>`` (the module proxy; see
:data:`slotstream.versions.GRAFANA_COMMIT`), copy the module to a writable directory
under the cache, ``go build ./pkg/cmd/grafana`` with CGO on (SQLite), keep the binary in
``<cache_dir>/grafana/<version>/bin/grafana``. The frontend is not built (the API is what
the tests use).

Once built, ``slotstream stack up`` runs it (:class:`GrafanaServer`) with the repository's
provisioning on loopback. A failed build is remembered in ``<cache_dir>/grafana/<version>/build-error.txt``, so
``slotstream stack status`` and the test report can say why there is no Grafana.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from slotstream.errors import BuildError, ServiceNotReadyError, StackError
from slotstream.settings import GrafanaSettings, PostgresSettings, StackSettings
from slotstream.stack.base import Report, ServiceStatus
from slotstream.stack.process import (
    ensure_port_free,
    read_pid,
    require_tool,
    run_logged,
    stop_pid_file,
    tail,
    wait_started,
)
from slotstream.versions import GRAFANA_COMMIT, GRAFANA_MODULE, GRAFANA_VERSION

__all__ = ["GrafanaBuild", "GrafanaServer", "build_grafana", "grafana_answers"]

#: Seconds `go mod download` may take (the module zip is ~100 MB).
DOWNLOAD_TIMEOUT_S = 1800


class GrafanaBuild:
    """Where the Grafana build of :data:`GRAFANA_VERSION` lives in the cache."""

    def __init__(self, stack: StackSettings) -> None:
        self.home = stack.cache_dir / "grafana" / GRAFANA_VERSION
        self.binary = self.home / "bin" / "grafana"
        self.source = self.home / "src"
        self.log = self.home / "build.log"
        self.error_file = self.home / "build-error.txt"
        self.go_cache = stack.cache_dir / "go"

    @property
    def built(self) -> bool:
        return self.binary.is_file() and os.access(self.binary, os.X_OK)

    def last_error(self) -> str | None:
        """The reason the last build failed, or None if none failed (or it was built)."""
        if self.built or not self.error_file.exists():
            return None
        return self.error_file.read_text(encoding="utf-8").strip() or None

    def describe(self) -> str:
        """One line for ``stack status`` and test reports."""
        if self.built:
            return f"Grafana {GRAFANA_VERSION} built at {self.binary}"
        error = self.last_error()
        if error is None:
            return f"Grafana {GRAFANA_VERSION} not built; run `slotstream stack build-grafana`"
        return f"Grafana {GRAFANA_VERSION} not available: {error}"


def _go_env(build: GrafanaBuild) -> dict[str, str]:
    return {
        **os.environ,
        "GOMODCACHE": str(build.go_cache / "mod"),
        "GOCACHE": str(build.go_cache / "cache"),
        "GOFLAGS": "-modcacherw -buildvcs=false",
        "CGO_ENABLED": "1",
    }


def build_grafana(stack: StackSettings, report: Report) -> Path:
    """Build (or find cached) the Grafana server binary; returns its path.

    Raises :class:`~slotstream.errors.MissingToolError` without ``go``, and
    :class:`~slotstream.errors.BuildError` with the proxy's or the compiler's message when
    the module cannot be downloaded or built (the message is also kept for ``status``).
    """
    build = GrafanaBuild(stack)
    if build.built:
        return build.binary
    go = require_tool("go", "install Go (https://go.dev/dl) or Debian's golang package")
    build.home.mkdir(parents=True, exist_ok=True)
    env = _go_env(build)
    target = f"{GRAFANA_MODULE}@{GRAFANA_COMMIT}"
    try:
        report(f"downloading {target} from the Go module proxy")
        started = time.monotonic()
        # Outside any module, so `go mod download` fetches exactly this version.
        with tempfile.TemporaryDirectory() as empty:
            proc = subprocess.run(
                [go, "mod", "download", "-json", target],
                capture_output=True,
                text=True,
                env=env,
                cwd=empty,
                timeout=DOWNLOAD_TIMEOUT_S,
                check=False,
            )
        try:
            info = json.loads(proc.stdout) if proc.stdout.strip() else {}
        except json.JSONDecodeError:
            info = {}
        error = info.get("Error") or (proc.stderr.strip() if proc.returncode != 0 else "")
        if error or "Dir" not in info:
            raise BuildError(
                f"`go mod download -json {target}` failed after {time.monotonic() - started:.1f} s: "
                f"{' '.join(str(error or 'no module directory in its output').split())}"
            )
        report(f"copying the module source to {build.source}")
        if build.source.exists():
            shutil.rmtree(build.source)
        shutil.copytree(info["Dir"], build.source)
        for root, dirs, files in os.walk(build.source):  # the module cache is read-only
            for name in dirs + files:
                os.chmod(os.path.join(root, name), 0o755 if name in dirs else 0o644)
        report("go build ./pkg/cmd/grafana (several minutes)")
        partial = build.binary.with_suffix(".partial")
        partial.parent.mkdir(parents=True, exist_ok=True)
        run_logged(
            [go, "build", "-o", partial, "./pkg/cmd/grafana"], build.log, "Building Grafana", cwd=build.source, env=env
        )
        partial.rename(build.binary)
    except BuildError as exc:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        build.error_file.write_text(f"{exc} (at {stamp})\n", encoding="utf-8")
        raise
    build.error_file.unlink(missing_ok=True)
    return build.binary


#: dashboards/ of the repository: provisioning (datasource, provider) and the JSON files.
DASHBOARDS_DIR = Path(__file__).resolve().parents[2] / "dashboards"


def grafana_answers(url: str, timeout_s: float = 2.0) -> bool:
    """True if ``<url>/api/health`` answers 200 with ``database: ok``."""
    import httpx

    try:
        r = httpx.get(f"{url}/api/health", timeout=timeout_s)
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and r.json().get("database") == "ok"


class GrafanaServer:
    """The Grafana built by :func:`build_grafana`, on loopback with slotstream's
    provisioning (the same files docker-compose mounts). Part of the stack only once
    built (:func:`slotstream.stack.services`)."""

    name = "grafana"

    def __init__(self, grafana: GrafanaSettings, postgres: PostgresSettings, stack: StackSettings) -> None:
        self._grafana = grafana
        self._postgres = postgres
        self._build = GrafanaBuild(stack)
        self._stack = stack
        self._home = stack.state_dir / "grafana"
        self._log = stack.log_dir / "grafana.log"
        self._pid_file = self._home / "grafana.pid"

    @property
    def log_path(self) -> Path:
        return self._log

    def install(self, report: Report) -> None:
        build_grafana(self._stack, report)

    def _env(self) -> dict[str, str]:
        g, pg = self._grafana, self._postgres
        if g.admin_password is None:
            raise StackError("set SLOTSTREAM_GRAFANA__ADMIN_PASSWORD (Grafana's admin password has no default)")
        return {
            **os.environ,
            "GF_PATHS_DATA": str(self._home / "data"),
            "GF_PATHS_LOGS": str(self._home / "logs"),
            "GF_PATHS_PLUGINS": str(self._home / "plugins"),
            "GF_PATHS_PROVISIONING": str(DASHBOARDS_DIR / "provisioning"),
            "GF_SERVER_HTTP_ADDR": g.host,
            "GF_SERVER_HTTP_PORT": str(g.port),
            "GF_SECURITY_ADMIN_USER": g.admin_user,
            "GF_SECURITY_ADMIN_PASSWORD": g.admin_password.get_secret_value(),
            "GF_ANALYTICS_REPORTING_ENABLED": "false",
            "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
            # Expanded by Grafana inside the provisioning files.
            "DASHBOARDS_JSON_DIR": str(DASHBOARDS_DIR / "json"),
            "SLOTSTREAM_POSTGRES__HOST": pg.host,
            "SLOTSTREAM_POSTGRES__PORT": str(pg.port),
            "SLOTSTREAM_POSTGRES__DATABASE": pg.database,
            "SLOTSTREAM_POSTGRES__READER_USER": pg.reader_user,
            "SLOTSTREAM_POSTGRES__READER_PASSWORD": pg.reader_password.get_secret_value(),
        }

    def start(self, report: Report) -> None:
        if read_pid(self._pid_file) is not None:
            return
        self.install(report)
        g = self._grafana
        ensure_port_free(g.host, g.port, "Grafana")
        env = self._env()
        self._home.mkdir(parents=True, exist_ok=True)
        self._log.parent.mkdir(parents=True, exist_ok=True)
        report(f"starting Grafana {GRAFANA_VERSION} on {g.url}")
        with self._log.open("ab") as out:
            proc = subprocess.Popen(
                [str(self._build.binary), "server", "--homepath", str(self._build.source)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self._pid_file.write_text(f"{proc.pid}\n")

        def ready() -> bool:
            if proc.poll() is not None:
                raise BuildError(f"Grafana exited with code {proc.returncode}; see {self._log}\n{tail(self._log)}")
            return grafana_answers(g.url)

        ok = wait_started(ready, 120.0, self._pid_file)
        if not ok:
            raise ServiceNotReadyError(f"Grafana did not answer /api/health within 120 s; see {self._log}")

    def stop(self) -> None:
        stop_pid_file(self._pid_file, timeout=30.0)

    def status(self) -> ServiceStatus:
        pid = read_pid(self._pid_file)
        return ServiceStatus(
            name=self.name,
            running=pid is not None,
            healthy=pid is not None and grafana_answers(self._grafana.url),
            pid=pid,
            address=self._grafana.url,
            version=GRAFANA_VERSION,
            log=self._log,
            detail="" if self._build.built else self._build.describe(),
        )
