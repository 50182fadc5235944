"""Modbus syringe pumps (RTU and TCP): register maps as data, their codec, an asyncio driver.

There is no standard register map for syringe pumps, so each pump's map is a YAML file
(configs/modbus/*.yaml, read by `pumpmap`) shared by the driver and the simulator.
"""
