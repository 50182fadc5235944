"""Software pumps that speak the same bytes as real ones, on an injectable clock."""
