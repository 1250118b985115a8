"""Native stack unwinding without frame pointers: tables from DWARF CFI."""

# --unwind-table-memory: kernel memory for the tables of a typical host's binaries.
DEFAULT_TABLE_MEMORY = 128 << 20
