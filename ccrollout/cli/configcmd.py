"""`ccrollout config`: the effective settings and where each came from, as
`ansible-config dump` shows them (--only-changed: those not at their default)."""

from .. import config as configuration
from .. import errors


def _shown(value) -> str:
    if value is None or value == ():
        return "(none)"
    if isinstance(value, tuple):
        return ", ".join(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def cmd_config(args) -> int:
    settings = args.config
    print(f"# {settings.path or 'no ccrollout.cfg found'}")
    for setting in configuration.SETTINGS:
        origin = settings.origin(setting.key)
        if args.only_changed and origin == configuration.DEFAULT:
            continue
        print(f"{setting.key} = {_shown(getattr(settings, setting.key))}  ({origin})")
    return errors.EXIT_OK
