"""A thin ctypes binding of the few libbpf (>= 1.2) calls that load struct_ops.

Only what ccrollout needs: open and load an object while capturing libbpf's
log (it carries the verifier's log on rejection), attach its struct_ops map
as a link, pin it, open a pinned link, and read a link's ids.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os

BPF_MAP_TYPE_STRUCT_OPS = 26
BPF_F_LINK = 1 << 13              # a struct_ops map registered through a link, not by an update (linux/bpf.h)
_LOG_BUFFER_SIZE = 1 << 16
_LIBBPF_INFO = 1                   # enum libbpf_print_level: WARN 0, INFO 1, DEBUG 2
_LINK_INFO_SIZE = 64              # sizeof(struct bpf_link_info) in linux/bpf.h
_LINK_INFO_STRUCT_OPS_MAP_ID = 16  # offsetof(struct bpf_link_info, struct_ops.map_id)
MIN_VERSION = (1, 2)               # struct_ops links (SEC(".struct_ops.link")) need 1.2


class LibbpfError(Exception):
    """A libbpf call failed; carries errno and libbpf's log of the call."""

    def __init__(self, message: str, err: int = 0, log: str = ""):
        detail = f": {os.strerror(err)}" if err else ""
        super().__init__(f"{message}{detail}")
        self.errno = err
        self.log = log


_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


class Libbpf:
    """libbpf loaded once per process; each method maps to one libbpf call."""

    def __init__(self, path: str | None = None):
        path = path or ctypes.util.find_library("bpf") or "libbpf.so.1"
        try:
            self._lib = ctypes.CDLL(path, use_errno=True)
        except OSError as exc:
            raise LibbpfError(f"libbpf is not installed ({exc})") from None
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._declare(path)
        self._log: list[str] = []
        # Kept as an attribute: libbpf calls it long after this constructor returns.
        self._print_callback = _PRINT_FN(self._on_print)
        self._lib.libbpf_set_print(self._print_callback)

    def _declare(self, path: str) -> None:
        lib, vp, cp, ci = self._lib, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        signatures = {
            "libbpf_major_version": ([], ctypes.c_uint32),
            "libbpf_minor_version": ([], ctypes.c_uint32),
            "libbpf_set_print": ([_PRINT_FN], vp),
            "bpf_object__open_file": ([cp, vp], vp),
            "bpf_object__load": ([vp], ci),
            "bpf_object__close": ([vp], None),
            "bpf_object__next_map": ([vp, vp], vp),
            "bpf_map__type": ([vp], ci),
            "bpf_map__name": ([vp], cp),
            "bpf_map__map_flags": ([vp], ctypes.c_uint32),
            "bpf_map__set_map_flags": ([vp, ctypes.c_uint32], ci),
            "bpf_map__set_autocreate": ([vp, ctypes.c_bool], ci),
            "bpf_map__attach_struct_ops": ([vp], vp),
            "bpf_link__pin": ([vp, cp], ci),
            "bpf_link__open": ([cp], vp),
            "bpf_link__fd": ([vp], ci),
            "bpf_link__update_map": ([vp, vp], ci),
            "bpf_link__disconnect": ([vp], None),
            "bpf_link__destroy": ([vp], ci),
            "bpf_link_get_info_by_fd": ([ci, vp, ctypes.POINTER(ctypes.c_uint32)], ci),
        }
        for name, (argtypes, restype) in signatures.items():
            try:
                function = getattr(lib, name)
            except AttributeError:  # a libbpf before 1.0: facts must report it, not crash on it
                raise LibbpfError(f"{path} has no {name}: libbpf {'.'.join(map(str, MIN_VERSION))} "
                                  "or newer is needed") from None
            function.argtypes = argtypes
            function.restype = restype
        self._libc.vsnprintf.argtypes = [cp, ctypes.c_size_t, cp, vp]
        self._libc.vsnprintf.restype = ci

    def _on_print(self, level: int, fmt: bytes, va_list: int) -> int:
        if level > _LIBBPF_INFO:  # debug lines (every CO-RE relocation) drown the verifier's words
            return 0
        # libbpf hands us printf arguments as a va_list; libc formats it (x86-64 ABI).
        buffer = ctypes.create_string_buffer(_LOG_BUFFER_SIZE)
        self._libc.vsnprintf(buffer, _LOG_BUFFER_SIZE, fmt, va_list)
        self._log.append(buffer.value.decode(errors="replace"))
        return 0

    @staticmethod
    def verifier_log(log: str) -> str:
        """The verifier's own words from a libbpf log, or the whole log if there are none."""
        begin, end = "-- BEGIN PROG LOAD LOG --", "-- END PROG LOAD LOG --"
        if begin in log and end in log:
            return log[log.index(begin) + len(begin):log.index(end)].strip("\n")
        return log

    def take_log(self) -> str:
        text, self._log = "".join(self._log), []
        return text

    def version(self) -> tuple[int, int]:
        return (self._lib.libbpf_major_version(), self._lib.libbpf_minor_version())

    @staticmethod
    def _errno() -> int:
        return ctypes.get_errno() or errno.EINVAL

    # -- objects -------------------------------------------------------------

    def open_object(self, path: str) -> int:
        self.take_log()
        obj = self._lib.bpf_object__open_file(path.encode(), None)
        if not obj:
            raise LibbpfError(f"cannot open BPF object {path}", self._errno(), self.take_log())
        return obj

    def load_object(self, obj: int) -> None:
        self.take_log()
        if self._lib.bpf_object__load(obj) != 0:
            raise LibbpfError("the kernel refused to load it", self._errno(), self.take_log())

    def close_object(self, obj: int) -> None:
        self._lib.bpf_object__close(obj)

    def struct_ops_maps(self, obj: int) -> list[tuple[str, int]]:
        """(name, map pointer) of every struct_ops map in the object."""
        found, current = [], None
        while True:
            current = self._lib.bpf_object__next_map(obj, current)
            if not current:
                return found
            if self._lib.bpf_map__type(current) == BPF_MAP_TYPE_STRUCT_OPS:
                found.append((self._lib.bpf_map__name(current).decode(), current))

    def make_link_map(self, map_pointer: int) -> None:
        """Before load: register this struct_ops map through a link, so that it can be pinned
        and updated in place, also when the source put it in the older SEC(".struct_ops")."""
        flags = self._lib.bpf_map__map_flags(map_pointer)
        if not flags & BPF_F_LINK and self._lib.bpf_map__set_map_flags(map_pointer, flags | BPF_F_LINK) != 0:
            raise LibbpfError("cannot make the struct_ops map a link", self._errno(), self.take_log())

    def skip_map(self, map_pointer: int) -> None:
        """Before load: do not create this map (libbpf 1.4 then skips its programs too)."""
        if self._lib.bpf_map__set_autocreate(map_pointer, False) != 0:
            raise LibbpfError("cannot leave out a struct_ops map", self._errno(), self.take_log())

    # -- links ---------------------------------------------------------------

    def attach_struct_ops(self, map_pointer: int) -> int:
        self.take_log()
        link = self._lib.bpf_map__attach_struct_ops(map_pointer)
        if not link:
            raise LibbpfError("cannot register the struct_ops map", self._errno(), self.take_log())
        return link

    def pin_link(self, link: int, path: str) -> None:
        if self._lib.bpf_link__pin(link, path.encode()) != 0:
            raise LibbpfError(f"cannot pin link at {path}", self._errno(), self.take_log())

    def open_pinned_link(self, path: str) -> int:
        link = self._lib.bpf_link__open(path.encode())
        if not link:
            raise LibbpfError(f"cannot open pinned link {path}", self._errno(), self.take_log())
        return link

    def update_link_map(self, link: int, map_pointer: int) -> None:
        if self._lib.bpf_link__update_map(link, map_pointer) != 0:
            raise LibbpfError("cannot update the link in place", self._errno(), self.take_log())

    def destroy_link(self, link: int) -> None:
        """Free the handle and detach: for a struct_ops link, the control is unregistered."""
        self._lib.bpf_link__destroy(link)

    def release_link(self, link: int) -> None:
        """Free libbpf's handle without detaching: the pin keeps the link alive. A disconnected
        link's descriptor is left open by libbpf; in an agent that lives for a whole session
        it would keep the control registered after its pin is gone, so it is closed here."""
        fd = self._lib.bpf_link__fd(link)
        self._lib.bpf_link__disconnect(link)
        self._lib.bpf_link__destroy(link)
        if fd >= 0:
            os.close(fd)

    def link_ids(self, link: int) -> dict:
        """The kernel's ids for a struct_ops link: link id, and the map it carries."""
        info = ctypes.create_string_buffer(_LINK_INFO_SIZE)
        size = ctypes.c_uint32(_LINK_INFO_SIZE)
        fd = self._lib.bpf_link__fd(link)
        if self._lib.bpf_link_get_info_by_fd(fd, info, ctypes.byref(size)) != 0:
            raise LibbpfError("cannot read link info", self._errno())
        link_type, link_id = ctypes.c_uint32.from_buffer(info, 0).value, ctypes.c_uint32.from_buffer(info, 4).value
        map_id = ctypes.c_uint32.from_buffer(info, _LINK_INFO_STRUCT_OPS_MAP_ID).value
        return {"link_type": link_type, "link_id": link_id, "map_id": map_id}


_shared: Libbpf | None = None


def shared() -> Libbpf:
    """The process-wide binding (libbpf's print callback is process-wide too)."""
    global _shared
    if _shared is None:
        _shared = Libbpf()
    return _shared
