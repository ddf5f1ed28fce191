"""calmon_sim: a simulated PTZ camera fleet that looks like real cameras from the outside.

scene (renderer), degrade (image degradations), fleet_spec (the fleet file), camera (SimCamera),
http_api (a camera's HTTP endpoints), fleet (SimFleet: all cameras + one MQTT publisher),
broker (an embedded MQTT broker). See calmon_sim/README.md.
"""
