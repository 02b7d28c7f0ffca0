"""A throwaway "machine" for `ray up`: a network namespace with only `lo`, sshd on 127.0.0.1:22
in it and a temporary user with a key, torn down completely afterwards.

sshd runs in a private mount namespace with its own /tmp (the user's Ray session never meets the
host's /tmp/ray) and, where this python lives under a folder other users cannot enter (pyenv in
/root), that folder replaced by an empty one holding only the python, so the user can run it.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("openssh-server", "rsync")
SSHD = "/usr/sbin/sshd"


def sh(cmd: list[str], timeout: float, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run a command, output captured; on failure an AssertionError carrying its output."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and result.returncode != 0:
        raise AssertionError(f"{shlex.join(cmd)} exited {result.returncode}:\n"
                             f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}")
    return result


def missing_requirement() -> str | None:
    """Why this machine cannot host the launcher test (None: it can), installing sshd and rsync
    with apt-get where they are missing."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "needs root on Linux (network namespace, a temporary user, sshd)"
    for tool in ("ip", "unshare", "useradd", "userdel", "ss", "pgrep", "ssh", "ssh-keygen"):
        if not shutil.which(tool):
            return f"needs `{tool}` on PATH"
    probe = f"simvp-probe-{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode != 0:
        return "cannot create a network namespace (`ip netns add` failed)"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    if Path(SSHD).exists() and shutil.which("rsync"):
        return None
    if not shutil.which("apt-get"):
        return "sshd or rsync missing and no apt-get to install them"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    for attempt in ([install], [["apt-get", "update", "-q"], install]):
        try:
            if all(subprocess.run(c, capture_output=True, timeout=240, env=env).returncode == 0
                   for c in attempt):
                break
        except subprocess.TimeoutExpired:
            pass
    if not (Path(SSHD).exists() and shutil.which("rsync")):
        return f"could not install {' '.join(PACKAGES)} with apt-get"
    return None


def _closed_ancestor(path: Path) -> Path | None:
    """The topmost folder above `path` that other users may not enter, if any."""
    for parent in reversed(path.parents):
        if parent != Path("/") and not parent.stat().st_mode & stat.S_IXOTH:
            return parent
    return None


def _kill(pids) -> None:
    """SIGKILL each of these processes that still exists."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass
class Host:
    """The namespace, its sshd and its user; `close()` removes all three, in whatever state."""

    root: Path  # root-only folder for the key, sshd's files and the stashed mounts
    expose: list[Path]  # folders the user must reach (this python's prefix)
    user: str = field(default_factory=lambda: f"simvpl{secrets.token_hex(3)}")
    ns: str = ""
    home: Path = Path()
    key: Path = Path()
    sshd_pid: int | None = None

    def __post_init__(self) -> None:
        self.ns = f"simvp-{self.user}"
        self.home = Path("/home") / self.user
        self.key = self.root / "id_ed25519"

    def netns(self, *cmd: str) -> list[str]:
        """`cmd` run inside the namespace (as root, in the host's file system)."""
        return ["ip", "netns", "exec", self.ns, *cmd]

    def start(self) -> None:
        """Make the namespace, the user and its key, and start sshd on 127.0.0.1:22 inside."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        sh(["ip", "netns", "add", self.ns], 10)
        sh(self.netns("ip", "link", "set", "lo", "up"), 10)
        sh(["useradd", "--create-home", "--home-dir", str(self.home), "--shell", "/bin/bash",
            "--password", "*", self.user], 30)
        sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], 30)
        sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.root / "host_key")], 30)
        ssh_dir = self.home / ".ssh"
        ssh_dir.mkdir(mode=0o700)
        shutil.copy(self.key.with_suffix(".pub"), ssh_dir / "authorized_keys")
        sh(["chown", "-R", f"{self.user}:", str(ssh_dir)], 10)
        (self.root / "sshd_config").write_text("\n".join([
            "ListenAddress 127.0.0.1", "Port 22", f"HostKey {self.root / 'host_key'}",
            f"PidFile {self.root / 'sshd.pid'}", f"AllowUsers {self.user}", "PermitRootLogin no",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
            "StrictModes no", "X11Forwarding no", "MaxSessions 100", "MaxStartups 100", ""]))
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
        sh(self.netns("unshare", "--mount", "--propagation", "private", "--fork", "bash", "-c",
                      self._mount_script()), 30)
        pid_file = self.root / "sshd.pid"  # written by the daemon, after its parent has exited
        for _ in range(100):
            if pid_file.is_file() and pid_file.read_text().strip():
                break
            time.sleep(0.1)
        else:
            log = self.root / "sshd.log"
            raise AssertionError(f"sshd wrote no pid file: {log.read_text() if log.exists() else ''}")
        self.sshd_pid = int(pid_file.read_text())

    def _mount_script(self) -> str:
        """Private /tmp and reachable exposed folders for sshd's mount namespace; sshd started."""
        overlay: dict[Path, list[Path]] = {Path("/tmp"): []}
        for path in (p.resolve() for p in self.expose):
            closed = _closed_ancestor(path)
            if closed:
                overlay.setdefault(closed, []).append(path)
        stash, lines = self.root / "stash", ["set -e"]
        kept = [p for paths in overlay.values() for p in paths]
        for i, path in enumerate(kept):
            lines += [f"mkdir -p {stash}/{i}", f"mount --bind {shlex.quote(str(path))} {stash}/{i}"]
        for folder, paths in overlay.items():
            mode = "1777" if folder == Path("/tmp") else "755"
            # (a folder under /tmp is gone once /tmp is the fresh tmpfs: made again first)
            lines += [f"mkdir -p {shlex.quote(str(folder))}",
                      f"mount -t tmpfs -o mode={mode} tmpfs {shlex.quote(str(folder))}"]
            for path in paths:
                i = kept.index(path)
                lines += [f"mkdir -p {shlex.quote(str(path))}",
                          f"mount --bind {stash}/{i} {shlex.quote(str(path))}"]
        lines.append(f"{SSHD} -f {self.root / 'sshd_config'} -E {self.root / 'sshd.log'}")
        return "\n".join(lines)

    def user_processes(self) -> list[str]:
        """'pid name' of every live process running as the user, but sshd's own sessions (/proc)."""
        try:
            uid = int(sh(["id", "-u", self.user], 10).stdout)
        except AssertionError:
            return []
        found = []
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
            except (OSError, ValueError):
                continue
            name, state = fields.get("Name", "").strip(), fields.get("State", "").strip()
            if (int(fields.get("Uid", "-1 ").split()[0]) == uid and not name.startswith("sshd")
                    and not state.startswith("Z")):
                found.append(f"{status.parent.name} {name}")
        return found

    def listening(self) -> list[str]:
        """`ss -ltnu` in the namespace: one line per listening socket, with its process."""
        out = sh(self.netns("ss", "-Hltunp"), 10).stdout
        return [" ".join(line.split()) for line in out.splitlines() if line.strip()]

    def close(self) -> None:
        """Kill what the user runs, sshd, and what else runs in the namespace; remove the user,
        the namespace and `root`."""
        _kill(int(proc.split()[0]) for proc in self.user_processes())
        self.stop_sshd()
        # What ran there as root: `ray` CLIs and their SSH multiplexers.
        _kill(int(pid) for pid in subprocess.run(["ip", "netns", "pids", self.ns],
                                                  capture_output=True, text=True,
                                                  timeout=10).stdout.split())
        subprocess.run(["userdel", "--remove", "--force", self.user], capture_output=True,
                       timeout=30)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)

    def stop_sshd(self) -> None:
        """End sshd (its sessions end with it) and wait up to 5 s for it to go."""
        if self.sshd_pid is None:
            return
        try:
            os.kill(self.sshd_pid, signal.SIGTERM)
            for _ in range(50):
                os.kill(self.sshd_pid, 0)
                time.sleep(0.1)
        except ProcessLookupError:
            pass
        self.sshd_pid = None
