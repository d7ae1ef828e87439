"""The lab command: the local fleet of network namespaces."""

import json
import sys

from .. import errors


def cmd_lab(args) -> int:
    from .. import lab
    if args.lab_command == "up":
        print(lab.up(hosts=args.hosts, behind_jump=args.behind_jump, with_monitoring=args.monitoring))
    elif args.lab_command == "down":
        lab.down()
    elif args.lab_command == "status":
        json.dump(lab.status(), sys.stdout, indent=2, sort_keys=True, default=str)
        print()
    elif args.lab_command == "inventory":
        print(lab.inventory_path())
    elif args.lab_command == "traffic":
        if args.action == "start":
            lab.traffic_start(args.hosts or None)
        else:
            lab.traffic_stop()
    elif args.lab_command == "impair":
        lab.impair(args.host, rate=args.rate, loss=args.loss, ce=args.ce, clear=args.clear)
    return errors.EXIT_OK
