"""Inspect a compiled BPF congestion control before it leaves the controller.

Reads the ELF object (pyelftools) and the struct layout from its BTF, and
answers: which struct_ops variables it defines, the name each registers
under, its flags, and which callbacks are filled in. This catches a wrong
object on the controller instead of on a thousand hosts.
"""

import struct
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

STRUCT_OPS_SECTIONS = (".struct_ops.link", ".struct_ops")
CONGESTION_OPS_STRUCT = "tcp_congestion_ops"
TCP_CA_NAME_MAX = 16  # including the terminating NUL

# What the kernel's tcp_validate_congestion_control() insists on.
REQUIRED_CALLBACKS = ("ssthresh", "undo_cwnd")
ONE_OF_CALLBACKS = ("cong_avoid", "cong_control")

_BTF_MAGIC = 0xEB9F
_KIND_STRUCT, _KIND_UNION, _KIND_VAR, _KIND_DATASEC = 4, 5, 14, 15
# Bytes that follow a btf_type record, by kind: fixed, and per member (vlen).
_KIND_EXTRA = {1: (4, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 13: (0, 8),
               14: (4, 0), 15: (0, 12), 17: (4, 0), 19: (0, 12)}


class ObjectError(Exception):
    """The object is not a congestion control ccrollout can push."""


@dataclass(frozen=True)
class StructOps:
    variable: str             # the C variable, e.g. ccr_reno: libbpf names its map so
    section: str              # .struct_ops.link, or the older .struct_ops (the host loader
                              # makes it a link too: BPF_F_LINK before load)
    name: str                 # the name the kernel registers
    flags: int
    callbacks: dict[str, str]  # member -> BPF program


@dataclass(frozen=True)
class _Type:
    kind: int
    name: str
    size_or_type: int
    members: list  # (name, type id, bit offset) for struct/union/datasec(offset in bytes)


def _parse_btf(data: bytes) -> dict[int, _Type]:
    magic, _version, _flags, header_len = struct.unpack_from("<HBBI", data, 0)
    if magic != _BTF_MAGIC:
        raise ObjectError("its BTF is not little-endian BTF")
    type_off, type_len, str_off, _str_len = struct.unpack_from("<IIII", data, 8)
    types_start = header_len + type_off
    strings = data[header_len + str_off:]

    def string(offset: int) -> str:
        return strings[offset:strings.index(b"\0", offset)].decode()

    types, position, type_id = {}, types_start, 1
    while position < types_start + type_len:
        name_off, info, size_or_type = struct.unpack_from("<III", data, position)
        kind, vlen, kind_flag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        position += 12
        fixed, per_member = _KIND_EXTRA.get(kind, (0, 0))
        members = []
        if kind in (_KIND_STRUCT, _KIND_UNION):
            for index in range(vlen):
                m_name, m_type, m_offset = struct.unpack_from("<III", data, position + 12 * index)
                bit_offset = m_offset & 0xFFFFFF if kind_flag else m_offset
                members.append((string(m_name), m_type, bit_offset))
        elif kind == _KIND_DATASEC:
            for index in range(vlen):
                v_type, v_offset, _v_size = struct.unpack_from("<III", data, position + 12 * index)
                members.append(("", v_type, v_offset))
        position += fixed + per_member * vlen
        types[type_id] = _Type(kind, string(name_off), size_or_type, members)
        type_id += 1
    return types


def inspect(path: str) -> list[StructOps]:
    """Every struct_ops variable of a congestion-control type in the object at PATH."""
    try:
        with open(path, "rb") as handle:
            elf = ELFFile(handle)
            btf_section = elf.get_section_by_name(".BTF")
            if btf_section is None:
                raise ObjectError("it carries no BTF (compile with -g)")
            types = _parse_btf(btf_section.data())
            found = []
            for section_name in STRUCT_OPS_SECTIONS:
                section = elf.get_section_by_name(section_name)
                if section is not None:
                    found += _struct_ops_in(elf, section, types)
            return found
    except (ELFError, struct.error, ValueError) as exc:
        raise ObjectError(f"it is not a readable BPF object ({exc})") from None


def _struct_ops_in(elf, section, types: dict[int, _Type]) -> list[StructOps]:
    datasec = next((t for t in types.values() if t.kind == _KIND_DATASEC and t.name == section.name), None)
    if datasec is None:
        return []
    data = section.data()
    programs_at = {}
    relocations = elf.get_section_by_name(".rel" + section.name)
    if relocations is not None:
        symbols = elf.get_section(relocations["sh_link"])
        for relocation in relocations.iter_relocations():
            programs_at[relocation["r_offset"]] = symbols.get_symbol(relocation["r_info_sym"]).name
    # The object's DATASEC may say offset 0 for every variable (libbpf fixes it up from the
    # symbols at open): the symbol table says where each one is.
    symbols = elf.get_section_by_name(".symtab")
    section_index = next(index for index, candidate in enumerate(elf.iter_sections())
                         if candidate.name == section.name)
    offsets = {symbol.name: symbol["st_value"] for symbol in (symbols.iter_symbols() if symbols else ())
               if symbol["st_shndx"] == section_index}
    found = []
    for _unused, var_type_id, var_offset in datasec.members:
        variable = types[var_type_id]
        var_offset = offsets.get(variable.name, var_offset)
        struct_type = _resolve(types, variable.size_or_type)
        if struct_type.name != CONGESTION_OPS_STRUCT:
            continue
        callbacks, name, flags = {}, "", 0
        for member, _member_type, bit_offset in struct_type.members:
            at = var_offset + bit_offset // 8
            if at in programs_at:
                callbacks[member] = programs_at[at]
            elif member == "name":
                name = data[at:at + TCP_CA_NAME_MAX].split(b"\0", 1)[0].decode(errors="replace")
            elif member == "flags":
                flags = struct.unpack_from("<I", data, at)[0]
        found.append(StructOps(variable.name, section.name, name, flags, callbacks))
    return found


def _resolve(types: dict[int, _Type], type_id: int) -> _Type:
    """Follow typedefs and qualifiers (kinds 8-11) to the struct itself."""
    current = types[type_id]
    while current.kind in (8, 9, 10, 11):
        current = types[current.size_or_type]
    return current


def check_congestion_control(path: str, expected_name: str) -> StructOps:
    """The congestion control named EXPECTED_NAME in PATH (an object may define several;
    the host attaches only that one), or ObjectError saying what is wrong with it."""
    found = inspect(path)
    if not found:
        raise ObjectError("it defines no tcp_congestion_ops struct_ops map (SEC(\".struct_ops.link\"))")
    named = [ops for ops in found if ops.name == expected_name]
    if not named:
        if len(found) == 1 and not found[0].name:
            raise ObjectError(f"{found[0].variable} sets no .name")
        if len(found) == 1:
            raise ObjectError(f"it registers as {found[0].name!r}, but the plan calls it {expected_name!r}")
        defined = ", ".join(f"{ops.name!r} ({ops.variable})" for ops in found)
        raise ObjectError(f"none of its {len(found)} tcp_congestion_ops registers as {expected_name!r}: "
                          f"it defines {defined}")
    if len(named) > 1:
        raise ObjectError(f"{' and '.join(ops.variable for ops in named)} both register as {expected_name!r}")
    ops = named[0]
    if len(ops.name) >= TCP_CA_NAME_MAX:
        raise ObjectError(f"its name {ops.name!r} is longer than the kernel's {TCP_CA_NAME_MAX - 1} characters")
    missing = [callback for callback in REQUIRED_CALLBACKS if callback not in ops.callbacks]
    if not any(callback in ops.callbacks for callback in ONE_OF_CALLBACKS):
        missing.append(" or ".join(ONE_OF_CALLBACKS))
    if missing:
        raise ObjectError(f"{ops.variable} lacks the required callbacks: {', '.join(missing)}")
    return ops
