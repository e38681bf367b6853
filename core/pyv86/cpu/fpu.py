"""x87 FPU (filled in below)."""
