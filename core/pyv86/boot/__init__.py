"""Direct kernel boot (no BIOS): the Linux 32-bit boot protocol."""
