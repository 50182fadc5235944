"""New Era syringe pumps over RS-232 (and TCP serial servers): codec and asyncio driver."""
