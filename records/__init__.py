"""Public call and outage records, replayed through the correlators to see what they make of
them: NYC 311 heating complaints (`nyc311`) and the Union Power outage log (`union_power`).

Each reader builds the network the records imply and the inbound events; `report` replays them
and summarises the incidents. Nothing here is simulated: the answer is not known in advance.
"""
