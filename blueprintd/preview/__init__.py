"""Fleet-wide preview of a Blueprint change (``blueprintd diff``): pure compare and grouping, one I/O adapter."""
