"""The local PostgreSQL 15 + TimescaleDB server.

PostgreSQL comes from Debian (``postgresql-15``); TimescaleDB is built once from
Debian trixie's ``timescaledb`` source package as the Apache-2 edition (recipe in
DEVELOPERS.md) and installed into PostgreSQL's extension directories. The cluster is
the project's own (``initdb`` under ``<state>/postgres``), listens on loopback on a
non-default port and preloads ``timescaledb``. PostgreSQL refuses to run as root, so
when slotstream runs as root the server runs as the ``postgres`` system user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from slotstream import versions
from slotstream.errors import BuildError, MissingToolError, ServiceNotReadyError
from slotstream.settings import PostgresSettings, StackSettings
from slotstream.stack.base import Report, ServiceStatus
from slotstream.stack.process import ensure_port_free, read_pid, require_tool, run_logged, tail

__all__ = ["PostgresServer", "timescaledb_version"]

_BOOTSTRAP_SQL = Path(__file__).with_name("sql") / "bootstrap.sql"
_PG = versions.POSTGRES_MAJOR
_SERVER_PACKAGES = [f"postgresql-{_PG}", f"postgresql-server-dev-{_PG}"]
_BUILD_PACKAGES = ["cmake", "gcc", "make", "libssl-dev", "libkrb5-dev", "dpkg-dev"]
_TRIXIE_SRC = Path("/etc/apt/sources.list.d/slotstream-trixie-src.sources")
_TRIXIE_SRC_TEXT = """\
# Added by slotstream: TimescaleDB is built from Debian trixie's source package.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def timescaledb_version(conninfo: str) -> str | None:
    """``extversion`` of the installed timescaledb extension, None if not installed."""
    import psycopg

    with psycopg.connect(conninfo, connect_timeout=3) as conn:
        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return None if row is None else str(row[0])


def _missing_packages(names: list[str]) -> list[str]:
    missing = []
    for name in names:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True, check=False)
        if "install ok installed" not in out.stdout:
            missing.append(name)
    return missing


class PostgresServer:
    """Project-owned PostgreSQL cluster with TimescaleDB; see the module docstring."""

    name = "timescaledb"

    def __init__(self, pg: PostgresSettings, stack: StackSettings) -> None:
        self._pg = pg
        self._bin = stack.pg_bin_dir
        self._home = stack.state_dir / "postgres"
        self._data = self._home / "data"
        self._run = self._home / "run"
        self._log = stack.log_dir / "postgres.log"
        self._build_dir = stack.cache_dir / "timescaledb" / versions.TIMESCALEDB_VERSION
        self._build_log = self._build_dir / "build.log"
        self._as_root = os.geteuid() == 0

    @property
    def log_path(self) -> Path:
        return self._log

    # -- install ---------------------------------------------------------------------

    def _pkglibdir(self) -> Path:
        pg_config = self._bin / "pg_config"
        out = subprocess.run([str(pg_config), "--pkglibdir"], capture_output=True, text=True, check=True)
        return Path(out.stdout.strip())

    def _timescaledb_installed(self) -> bool:
        if not (self._bin / "postgres").exists():
            return False
        lib = self._pkglibdir() / f"timescaledb-{versions.TIMESCALEDB_VERSION}.so"
        return lib.exists()

    def _apt(self, *args: str, what: str) -> None:
        if not self._as_root:
            raise MissingToolError(f"{what} needs root (apt-get); run as root: apt-get {' '.join(args)}")
        apt = require_tool("apt-get", "This stack installs Debian packages; use Debian/Ubuntu or Docker.")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run_logged([apt, *args], self._build_log, what, env=env)

    def _apt_install(self, packages: list[str], report: Report) -> None:
        missing = _missing_packages(packages)
        if not missing:
            return
        report(f"apt-get install {' '.join(missing)}")
        self._apt("update", what="apt-get update")
        self._apt("install", "-y", "--no-install-recommends", *missing, what="Installing " + " ".join(missing))

    def install(self, report: Report) -> None:
        """Install PostgreSQL 15 and build TimescaleDB once (~1 min cold)."""
        self._build_dir.mkdir(parents=True, exist_ok=True)
        if self._timescaledb_installed():
            return
        self._apt_install(_SERVER_PACKAGES + _BUILD_PACKAGES, report)
        if self._timescaledb_installed():
            return
        self._build_timescaledb(report)

    def _build_timescaledb(self, report: Report) -> None:
        if not _TRIXIE_SRC.exists():
            if not self._as_root:
                raise MissingToolError(f"Adding {_TRIXIE_SRC} needs root.")
            _TRIXIE_SRC.write_text(_TRIXIE_SRC_TEXT)
        report("fetching Debian trixie's timescaledb source package")
        self._apt("update", what="apt-get update (trixie sources)")
        src_root = self._build_dir / "src"
        shutil.rmtree(src_root, ignore_errors=True)
        src_root.mkdir(parents=True)
        run_logged(
            [require_tool("apt-get", ""), "source", "timescaledb"],
            self._build_log,
            "apt-get source timescaledb",
            cwd=src_root,
        )
        trees = [p for p in src_root.iterdir() if p.is_dir() and p.name.startswith("timescaledb-")]
        if len(trees) != 1 or not trees[0].name.startswith(f"timescaledb-{versions.TIMESCALEDB_VERSION}"):
            raise BuildError(
                f"Expected the timescaledb {versions.TIMESCALEDB_VERSION} source tree in {src_root}, "
                f"found {[p.name for p in trees]}: Debian trixie changed its version; update "
                f"slotstream/versions.py and docker-compose.yml together."
            )
        tree = trees[0]
        report(f"building TimescaleDB {versions.TIMESCALEDB_VERSION} (Apache-2 edition, ~1 min)")
        run_logged(
            [
                "./bootstrap",
                "-DAPACHE_ONLY=1",
                "-DREGRESS_CHECKS=OFF",
                "-DTAP_CHECKS=OFF",
                f"-DPG_CONFIG={self._bin / 'pg_config'}",
            ],
            self._build_log,
            "Configuring TimescaleDB",
            cwd=tree,
        )
        run_logged(
            ["make", f"-j{os.cpu_count() or 2}", "-C", "build"],
            self._build_log,
            "Building TimescaleDB",
            cwd=tree,
        )
        if not self._as_root:
            raise MissingToolError(
                f"TimescaleDB is built in {tree}/build; installing it needs root: make -C {tree}/build install"
            )
        run_logged(["make", "-C", "build", "install"], self._build_log, "Installing TimescaleDB", cwd=tree)
        shutil.rmtree(src_root, ignore_errors=True)

    # -- run -------------------------------------------------------------------------

    def _as_server_user(self, cmd: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if self._as_root else cmd

    def _chown(self, *paths: Path) -> None:
        if self._as_root:
            for path in paths:
                shutil.chown(path, "postgres", "postgres")

    def _init_cluster(self, report: Report) -> None:
        self._home.mkdir(parents=True, exist_ok=True)
        self._run.mkdir(parents=True, exist_ok=True)
        self._chown(self._home, self._run)
        if (self._data / "PG_VERSION").exists():
            return
        report("initdb: creating the slotstream PostgreSQL cluster")
        cmd = [
            str(self._bin / "initdb"),
            "-D",
            str(self._data),
            "-U",
            "postgres",
            "--auth-local=trust",  # the socket lives in a directory only we can reach
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
        ]
        run_logged(self._as_server_user(cmd), self._log, "initdb")

    def _write_config(self) -> None:
        pg = self._pg
        conf = {
            "listen_addresses": f"'{pg.host}'",
            "port": str(pg.port),
            "unix_socket_directories": f"'{self._run}'",
            "shared_preload_libraries": "'timescaledb'",
            "timescaledb.telemetry_level": "off",
            "max_connections": "100",
            "shared_buffers": "256MB",
            "max_wal_size": "2GB",
        }
        text = "# Written by slotstream on every start; edit the settings, not this file.\n"
        text += "".join(f"{key} = {value}\n" for key, value in conf.items())
        (self._data / "slotstream.conf").write_text(text)
        main = self._data / "postgresql.conf"
        if "include_if_exists = 'slotstream.conf'" not in main.read_text():
            with main.open("a") as f:
                f.write("\ninclude_if_exists = 'slotstream.conf'\n")
        self._chown(self._data / "slotstream.conf")

    def _postmaster_pid(self) -> int | None:
        return read_pid(self._data / "postmaster.pid")

    def start(self, report: Report) -> None:
        if self._postmaster_pid() is not None:
            return
        self.install(report)
        pg = self._pg
        ensure_port_free(pg.host, pg.port, "PostgreSQL")
        self._init_cluster(report)
        self._write_config()
        self._log.parent.mkdir(parents=True, exist_ok=True)
        self._log.touch()
        self._chown(self._log)
        report(f"starting PostgreSQL {_PG} + TimescaleDB on {pg.host}:{pg.port}")
        cmd = [
            str(self._bin / "pg_ctl"),
            "start",
            "-D",
            str(self._data),
            "-l",
            str(self._log),
            "-w",
            "-t",
            str(int(pg.start_timeout_s)),
        ]
        try:
            run_logged(self._as_server_user(cmd), self._log, "Starting PostgreSQL")
        except BuildError as exc:
            raise ServiceNotReadyError(f"PostgreSQL did not start; see {self._log}\n{tail(self._log)}") from exc
        self._bootstrap()
        version = self._probe()
        if version != versions.TIMESCALEDB_VERSION:
            raise ServiceNotReadyError(f"timescaledb extension is {version}, expected {versions.TIMESCALEDB_VERSION}")

    def _bootstrap(self) -> None:
        """Create roles, database and extension (idempotent; see sql/bootstrap.sql)."""
        pg = self._pg
        psql = [
            str(self._bin / "psql"),
            "-X",
            "-q",
            "-h",
            str(self._run),
            "-p",
            str(pg.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            f"owner={pg.user}",
            "-v",
            f"owner_password={pg.password.get_secret_value()}",
            "-v",
            f"reader={pg.reader_user}",
            "-v",
            f"reader_password={pg.reader_password.get_secret_value()}",
            "-v",
            f"dbname={pg.database}",
            "-v",
            f"schema={pg.db_schema}",
            "-f",
            str(_BOOTSTRAP_SQL),
        ]
        run_logged(psql, self._home / "bootstrap.log", "Creating the slotstream roles and database")

    def _probe(self) -> str | None:
        return timescaledb_version(self._pg.conninfo())

    def stop(self) -> None:
        if self._postmaster_pid() is None:
            return
        cmd = [str(self._bin / "pg_ctl"), "stop", "-D", str(self._data), "-m", "fast", "-w", "-t", "60"]
        run_logged(self._as_server_user(cmd), self._log, "Stopping PostgreSQL")

    def status(self) -> ServiceStatus:
        pid = self._postmaster_pid()
        healthy = False
        detail = ""
        version = versions.TIMESCALEDB_VERSION
        if pid is not None:
            try:
                found = self._probe()
                healthy = found == versions.TIMESCALEDB_VERSION
                detail = "" if healthy else f"timescaledb extension: {found}"
            except Exception as exc:  # noqa: BLE001 - shown to the user as the reason
                detail = f"{type(exc).__name__}: {exc}"
        return ServiceStatus(
            name=self.name,
            running=pid is not None,
            healthy=healthy,
            pid=pid,
            address=f"{self._pg.host}:{self._pg.port}",
            version=f"PostgreSQL {_PG} + TimescaleDB {version}",
            log=self._log,
            detail=detail,
        )
