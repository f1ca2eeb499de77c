"""Crafted ELF files for the tests of create --from scratch: a 64-bit little-endian shared
object with chosen DT_NEEDED, DT_RPATH, DT_RUNPATH, program interpreter and machine, written
byte by byte (no compiler needed, so the testbed can get them too)."""

import struct

ET_DYN = 3
EM_X86_64 = 62
EM_AARCH64 = 183
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_RPATH, DT_RUNPATH = 0, 1, 5, 10, 15, 29

MACHINE_NUMBERS = {"EM_X86_64": EM_X86_64, "EM_AARCH64": EM_AARCH64, "EM_386": 3,
                   "EM_ARM": 40, "EM_PPC64": 21, "EM_S390": 22, "EM_RISCV": 243}


def shared_object(needed=(), rpath=None, runpath=None, interp=None,
                  machine=EM_X86_64) -> bytes:
    """Header, program headers (LOAD over the whole file, INTERP, DYNAMIC), the interpreter's
    name, the string table and the dynamic table, in that order; addresses equal offsets."""
    strtab = b"\0"
    offsets = {}
    for name in (*needed, rpath, runpath):
        if name is not None and name not in offsets:
            offsets[name] = len(strtab)
            strtab += name.encode() + b"\0"
    phnum = 3 if interp else 2
    at = 64 + 56 * phnum
    interp_bytes = interp.encode() + b"\0" if interp else b""
    interp_at = at
    strtab_at = interp_at + len(interp_bytes)
    dyn_at = (strtab_at + len(strtab) + 7) & ~7
    tags = [(DT_NEEDED, offsets[n]) for n in needed]
    if rpath is not None:
        tags.append((DT_RPATH, offsets[rpath]))
    if runpath is not None:
        tags.append((DT_RUNPATH, offsets[runpath]))
    tags += [(DT_STRTAB, strtab_at), (DT_STRSZ, len(strtab)), (DT_NULL, 0)]
    dynamic = b"".join(struct.pack("<qQ", tag, value) for tag, value in tags)
    size = dyn_at + len(dynamic)

    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header = ident + struct.pack("<HHIQQQIHHHHHH", ET_DYN, machine, 1, 0, 64, 0, 0, 64, 56,
                                 phnum, 64, 0, 0)

    def phdr(kind, offset, length, flags=4, align=8):
        return struct.pack("<IIQQQQQQ", kind, flags, offset, offset, offset, length, length,
                           align)

    phdrs = phdr(PT_LOAD, 0, size, 5, 0x1000)
    if interp:
        phdrs += phdr(PT_INTERP, interp_at, len(interp_bytes), 4, 1)
    phdrs += phdr(PT_DYNAMIC, dyn_at, len(dynamic), 6, 8)
    body = header + phdrs + interp_bytes + strtab
    body += bytes(dyn_at - len(body))
    return body + dynamic
