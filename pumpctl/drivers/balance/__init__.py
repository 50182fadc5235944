"""Laboratory balances: the MT-SICS command set over serial or TCP (see docs/balance.md)."""
