"""ccrollout.cfg: the defaults an operator would otherwise type every time.

Looked up as Ansible looks up ansible.cfg: $CCROLLOUT_CONFIG, then ./ccrollout.cfg, then
~/.ccrollout.cfg; the first found wins and no other is read. A ccrollout.cfg in a
world-writable current directory is ignored with a warning, since anyone could have put it
there. Each key can also come from a CCROLLOUT_* variable. What wins: the command line,
then the environment, then the file, then the built-in default (the CLI applies the first).

Pure: the environment, the current directory and the home directory are passed in, and
nothing here prints (warnings are handed to a callable).
"""

import configparser
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from . import errors
from .errors import UserError
from .localfiles import UnreadableFile, read_regular_text

SECTION = "defaults"
FILE_NAME = "ccrollout.cfg"
HOME_FILE_NAME = ".ccrollout.cfg"
CONFIG_VARIABLE = "CCROLLOUT_CONFIG"
MAX_CONFIG_BYTES = 1 << 20
MAX_FORKS = 1000

DEFAULT = "default"  # the origin of a value nobody set


class BadConfigFile(UserError):
    """A configuration file that cannot be used: exit 3, like any other invalid input file."""

    exit_code = errors.EXIT_INVALID_INPUT


class BadVariable(UserError):
    """A CCROLLOUT_* variable that cannot be used: exit 2, like a bad command line."""

    exit_code = errors.EXIT_USAGE


def _number(text: str, kind, low: float, high: float, what: str, above_low: bool = False):
    """TEXT as a KIND from LOW (or just above it) to HIGH; ValueError saying WHAT it must be."""
    try:
        value = kind(text.strip())
    except ValueError:
        value = None
    # NaN compares false to everything, so it fails the range test too.
    if value is None or not low <= value <= high or (above_low and value == low):
        raise ValueError(f"must be {what}, not {text.strip()!r}")
    return value


def _forks(text: str) -> int:
    return _number(text, int, 1, MAX_FORKS, f"a whole number of hosts from 1 to {MAX_FORKS}")


def _timeout(text: str) -> float:
    return _number(text, float, 0, 3600, "seconds, more than 0 and at most 3600", above_low=True)


def _command_timeout(text: str) -> float:
    return _number(text, float, 0, 86400, "seconds, more than 0 and at most 86400 (a day)", above_low=True)


def _items(text: str) -> list[str]:
    """Comma- or newline-separated items, blanks dropped."""
    return [item.strip() for line in text.splitlines() for item in line.split(",") if item.strip()]


def _paths(text: str, base: str) -> tuple[str, ...]:
    paths = tuple(_path(item, base) for item in _items(text))
    if not paths:
        raise ValueError("names no path")
    return paths


def _path(text: str, base: str) -> str:
    # As Ansible resolves a path in ansible.cfg: ~ expanded, relative to the file's directory.
    path = os.path.expanduser(text.strip())
    if not path:
        raise ValueError("names no path")
    return os.path.normpath(os.path.join(base, path))


def _urls(text: str) -> tuple[str, ...]:
    urls = tuple(_items(text))
    for url in urls:
        if not url.startswith(("http://", "https://")) or any(c.isspace() or ord(c) < 32 for c in url):
            raise ValueError(f"must be http:// or https:// URLs, not {url!r}")
    return urls


@dataclass(frozen=True)
class Setting:
    key: str          # in [defaults]
    read: Callable    # text, base directory -> value; ValueError names what is wrong
    meaning: str

    @property
    def variable(self) -> str:
        return "CCROLLOUT_" + self.key.upper()


SETTINGS = (
    Setting("inventory", _paths, "inventory files or directories, comma-separated (as -i)"),
    Setting("forks", lambda text, base: _forks(text), "hosts reached at once (as -f)"),
    Setting("timeout", lambda text, base: _timeout(text), "SSH connection timeout in seconds (as -T)"),
    Setting("command_timeout", lambda text, base: _command_timeout(text),
            "seconds a host may stay silent while it works on a request (as --command-timeout)"),
    Setting("journal", lambda text, base: _path(text, base), "the rollout journal (as --journal)"),
    Setting("notify", lambda text, base: _urls(text), "webhook URLs to tell of a rollout's events, "
            "comma- or newline-separated"),
)
SETTINGS_BY_KEY = {setting.key: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Config:
    """The effective settings, and where each came from (DEFAULT, a variable's name, or
    FILE:LINE). The defaults here are the built-in ones (the timeouts are fleet.Timeouts')."""

    inventory: tuple[str, ...] | None = None
    forks: int = 5
    timeout: float = 10.0
    command_timeout: float = 120.0
    journal: str | None = None
    notify: tuple[str, ...] = ()
    path: str | None = None       # the file read, if any
    origins: dict = field(default_factory=dict)

    def origin(self, key: str) -> str:
        return self.origins.get(key, DEFAULT)


def find_file(environ: Mapping[str, str], cwd: str, home: str, warn: Callable[[str], None]) -> str | None:
    """The one configuration file to read, or None."""
    named = environ.get(CONFIG_VARIABLE)
    if named:
        path = os.path.join(named, FILE_NAME) if os.path.isdir(named) else named
        if not os.path.exists(path):
            raise BadVariable(f"{CONFIG_VARIABLE}={named}: no such file")
        return path
    local = os.path.join(cwd, FILE_NAME)
    if os.path.exists(local):
        if _world_writable(cwd):
            warn(f"ignoring {local}: {cwd} is world-writable, so anyone could have put it there")
        else:
            return local
    in_home = os.path.join(home, HOME_FILE_NAME)
    return in_home if os.path.exists(in_home) else None


def _world_writable(directory: str) -> bool:
    try:
        return bool(os.stat(directory).st_mode & stat.S_IWOTH)
    except OSError:
        return False


def _read_file(path: str, warn: Callable[[str], None]) -> dict[str, tuple[str, int]]:
    """Each key of [defaults] with its text and line; other sections are not ours to judge."""
    try:
        text = read_regular_text(path, MAX_CONFIG_BYTES)
    except UnreadableFile as exc:
        raise BadConfigFile(f"{path}: {exc}") from None
    # No interpolation (a URL may hold %), no DEFAULT section leaking into [defaults], and
    # inline comments after " ;" only, as in ansible.cfg (a URL may hold #).
    parser = configparser.ConfigParser(interpolation=None, strict=True, default_section="\0none",
                                       inline_comment_prefixes=(";",))
    try:
        parser.read_string(text, source=path)
    except configparser.Error as exc:
        raise BadConfigFile(f"{path}: {' '.join(exc.message.split())}") from None
    if not parser.has_section(SECTION):
        return {}
    lines = _key_lines(text)
    found = {}
    for key, value in parser.items(SECTION):
        line = lines.get(key, 0)
        if key not in SETTINGS_BY_KEY:
            warn(f"{path}:{line}: [{SECTION}] {key} is not a ccrollout setting "
                 f"(known: {', '.join(SETTINGS_BY_KEY)}); ignored")
            continue
        found[key] = (value, line)
    return found


def _key_lines(text: str) -> dict[str, int]:
    """The line each key of [defaults] is set on (configparser does not keep it)."""
    lines, section = {}, None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1].strip()
        elif section == SECTION and stripped and not line[0].isspace() and stripped[0] not in "#;":
            for separator in ("=", ":"):
                if separator in stripped:
                    lines.setdefault(stripped.split(separator, 1)[0].strip().lower(), number)
                    break
    return lines


def load(environ: Mapping[str, str], cwd: str, home: str, warn: Callable[[str], None] = lambda text: None) -> Config:
    """The effective settings: each CCROLLOUT_* variable over the file's key over the default."""
    path = find_file(environ, cwd, home, warn)
    from_file = _read_file(path, warn) if path else {}
    values, origins = {}, {}
    for setting in SETTINGS:
        if environ.get(setting.variable, "").strip():
            text = environ[setting.variable]
            try:
                values[setting.key] = setting.read(text, cwd)
            except ValueError as exc:
                raise BadVariable(f"{setting.variable}: {exc}") from None
            origins[setting.key] = setting.variable
        elif setting.key in from_file:
            text, line = from_file[setting.key]
            try:
                values[setting.key] = setting.read(text, os.path.dirname(os.path.abspath(path)))
            except ValueError as exc:
                raise BadConfigFile(f"{path}:{line}: {setting.key} {exc}") from None
            origins[setting.key] = f"{path}:{line}"
    return Config(**values, path=path, origins=origins)


def load_for_this_process(warn: Callable[[str], None]) -> Config:
    try:
        cwd = os.getcwd()
    except OSError:  # the current directory was removed: there is no ./ccrollout.cfg to read
        cwd = "/nonexistent"
    return load(os.environ, cwd, os.path.expanduser("~"), warn)
