"""Package the host side (ccrollout/host) as one zip that a host's python3 runs.

The zip is built deterministically, so its digest names it: a host that
already has this version is not sent it again. It travels on the agent's
own stdin when the bootstrap asks for it, so reaching a host for the first
time still costs one SSH command, not a file transfer besides.

A host unpacks the zip once beside it, compiled: Python compiles what it
imports from a zip at every start, which cost each agent 60 ms. The zip's
MANIFEST lists each member's digest, and the controller names the
MANIFEST's, so the unpacked copy is checked at every start as the zip is.
"""

import hashlib
import io
import shlex
import zipfile
from functools import lru_cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_MAIN = "import runpy\nrunpy.run_module('ccrollout.host', run_name='__main__')\n"
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)
MANIFEST = "MANIFEST"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@lru_cache(maxsize=1)
def _members() -> dict:
    members = {"__main__.py": _MAIN.encode(),
               "ccrollout/__init__.py": b""}
    for path in sorted((_PACKAGE / "host").glob("*.py")):
        members[f"ccrollout/host/{path.name}"] = path.read_bytes()
    # "DIGEST NAME" a line: what an unpacked copy must hold (BOOTSTRAP reads it).
    members[MANIFEST] = "".join(f"{_sha256(data)} {name}\n" for name, data in sorted(members.items())).encode()
    return members


def manifest_digest() -> str:
    return _sha256(_members()[MANIFEST])


@lru_cache(maxsize=1)
def bundle() -> tuple[bytes, str]:
    """(zip bytes, sha256) of the host side."""
    members = _members()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, _FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    data = buffer.getvalue()
    return data, _sha256(data)


# Run as `python3 -c BOOTSTRAP PYZ SIZE DIGEST LISTED`: stdin carries the agent's messages.
# A host that lacks the zip of this DIGEST (SIZE bytes) asks for it on the same channel, so a
# first contact costs one command too: it sets the first message aside, writes NEED_CODE,
# reads the zip, and then reads the first message again (the controller sends it twice).
# The agent runs from the zip unpacked and compiled beside it (PYZ without .pyz) when that
# copy's MANIFEST has the digest LISTED and each file the digest the MANIFEST gives; else it
# unpacks it, or (failing that) runs from the zip. Whatever is about to run must have the
# controller's digests, and the state directory must be ours alone: a copy planted in a
# directory others may write is never run. Python 2 must be able to read this far.
BOOTSTRAP = """\
import sys
if sys.version_info < (3, 8):
    sys.stderr.write("ccrollout: python %d.%d is too old: the host side needs 3.8 or newer\\n" % sys.version_info[:2])
    sys.exit(76)
import glob, hashlib, os, runpy, stat
path, size, digest, listed = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
home, tree = os.path.dirname(path), path[:-len(".pyz")]
os.makedirs(home, mode=0o700, exist_ok=True)
info = os.lstat(home)
if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
    sys.exit("ccrollout: the state directory %s must be a directory owned by this user that no one else may write" % home)
def sha256_of(name):
    with open(name, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()
def held():
    try:
        return sha256_of(path) == digest
    except OSError:
        return False
if not held():
    if not sys.stdin.buffer.readline():
        sys.exit(0)
    sys.stdout.write(NEED_CODE + "\\n")
    sys.stdout.flush()
    data = sys.stdin.buffer.read(size)
    if hashlib.sha256(data).hexdigest() != digest:
        sys.exit("ccrollout: the host side arrived damaged")
    partial = "%s.%s.partial" % (path, os.urandom(8).hex())
    with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
        handle.write(data)
    os.replace(partial, path)
    for old in glob.glob(os.path.join(home, "ccrollout-host-*.pyz")):
        if old != path:
            os.unlink(old)
def unpacked():
    try:
        manifest = os.path.join(tree, MANIFEST_NAME)
        if sha256_of(manifest) != listed:
            return False
        with open(manifest) as handle:
            entries = [line.split(" ", 1) for line in handle.read().splitlines()]
        return all(sha256_of(os.path.join(tree, name)) == want for want, name in entries)
    except (OSError, ValueError):
        return False
def unpack():
    import py_compile, shutil, zipfile
    for old in glob.glob(os.path.join(home, "ccrollout-host-*")):
        if os.path.isdir(old) and old != tree:
            shutil.rmtree(old, ignore_errors=True)
    partial = "%s.%s.partial" % (tree, os.urandom(8).hex())
    with zipfile.ZipFile(path) as archive:
        archive.extractall(partial)
        names = archive.namelist()
    for name in names:
        if name.endswith(".py"):
            py_compile.compile(os.path.join(partial, name), dfile=os.path.join(tree, name), doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    if unpacked():  # another agent unpacked it meanwhile, and may run from it: keep that one
        shutil.rmtree(partial, ignore_errors=True)
        return
    if os.path.isdir(tree):
        stale = "%s.%s.stale" % (tree, os.urandom(8).hex())
        os.rename(tree, stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.rename(partial, tree)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
ready = unpacked()
if not ready:
    try:
        unpack()
        ready = unpacked()
    except Exception:
        pass
sys.path.insert(0, tree if ready else path)
sys.argv = [path]
runpy.run_module("ccrollout.host", run_name="__main__")
"""
NEED_CODE = '{"need": "host side"}'  # the bootstrap's one line of its own, before the agent's
for _placeholder, _value in (("NEED_CODE", NEED_CODE), ("MANIFEST_NAME", MANIFEST)):
    BOOTSTRAP = BOOTSTRAP.replace(_placeholder, repr(_value))

EXIT_OLD_PYTHON = 76
EXIT_NO_PYTHON = 77  # interpreter discovery found no Python 3.8 or newer

# ansible_python_interpreter values that ask the host for its Python, as Ansible's discovery.
AUTO_PYTHON = ("auto", "auto_silent", "auto_legacy", "auto_legacy_silent")
PYTHON_CANDIDATES = ("/usr/bin/python3", "/usr/libexec/platform-python",
                     *(f"python3.{minor}" for minor in range(13, 7, -1)), "python3")


def discovery_script(candidates=PYTHON_CANDIDATES) -> str:
    """A POSIX sh script, run as `sh -c SCRIPT sh ARGS...`, that execs the first of CANDIDATES
    that is Python 3.8 or newer with ARGS: found in the same command that starts the agent,
    so discovery costs no round trip. None found: exit EXIT_NO_PYTHON, naming those tried."""
    tried = " ".join(shlex.quote(candidate) for candidate in candidates)
    return f"""\
for python in {tried}; do
  if command -v "$python" >/dev/null 2>&1 &&
     "$python" -c 'import sys; sys.exit(sys.version_info < (3, 8))' >/dev/null 2>&1; then
    exec "$python" "$@"
  fi
done
echo "no Python 3.8 or newer on this host (tried {' '.join(candidates)})" >&2
exit {EXIT_NO_PYTHON}
"""


def agent_command(python: str, remote: str) -> list[str]:
    """The command that starts the host side: the bootstrap under PYTHON (a path, or one of
    AUTO_PYTHON to find one), for this version's zip at REMOTE."""
    code, digest = bundle()
    arguments = ["-c", BOOTSTRAP, remote, str(len(code)), digest, manifest_digest()]
    if python in AUTO_PYTHON:
        return ["sh", "-c", discovery_script(), "sh", *arguments]
    return [python, *arguments]


def remote_name() -> str:
    return f"ccrollout-host-{bundle()[1][:16]}.pyz"
